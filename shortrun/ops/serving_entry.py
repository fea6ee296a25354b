"""MLflow "models from code" entry point of the registered generator.

MLflow runs this file when it loads the model, instead of unpickling a Python object.
"""
from mlflow.models import set_model

from shortrun.ops.serving import GeneratorPyfunc

set_model(GeneratorPyfunc())
