"""Post-training OOD evaluation: the data and model adapters (inputs, model), the choice of
score hyperparameters on the validation pair (selection) and the evaluation itself (engine).
The public entry point is ``oodlab.evaluate`` (oodlab.api)."""
