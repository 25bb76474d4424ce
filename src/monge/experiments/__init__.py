"""Experiments: the ``monge run`` job (config, training, evaluation, report)."""

from monge.experiments.build import build_components
from monge.experiments.config import RunConfig, SolverSpec, load_config, parse_config
from monge.experiments.evaluate import evaluate
from monge.experiments.load import Trained, load_trained
from monge.experiments.run import run_experiment

__all__ = ["RunConfig", "SolverSpec", "Trained", "build_components", "evaluate", "load_config",
           "load_trained", "parse_config", "run_experiment"]
