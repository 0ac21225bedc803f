"""Where images come from: one module per source, each holding that source's in-distribution
loader (ending in oodlab.data.splits.assemble) and its OOD-set builders. Nothing is imported
here, so choosing one source never imports another's dependencies (torchvision, PIL fonts).
"""
