"""Evaluation: answer checking (:func:`is_correct`) and the accuracy callbacks.

The callbacks (``lm_latent.evaluation.callbacks``) import Lightning and are imported lazily so that
answer checking stays a light import.
"""

from lm_latent.evaluation.answers import TASK_OF_DATASET, TASKS, is_correct, resolve_task

__all__ = ["TASK_OF_DATASET", "TASKS", "is_correct", "resolve_task"]
