"""Serving: the BentoML service and the request schema it checks."""

# Our files sit in this subdirectory of a BentoML model, because BentoML
# writes its own model.yaml at the model's root.
BENTO_MODEL_SUBDIR = "maas"
