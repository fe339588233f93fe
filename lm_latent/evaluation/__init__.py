"""Evaluation: answer checking (:func:`is_correct`) and the accuracy callbacks.

The callbacks (``lm_latent.evaluation.callbacks``) import Lightning and are imported lazily so that
answer checking stays a light import.
"""

from lm_latent.evaluation.answers import TASK_OF_DATASET, TASKS, is_correct, resolve_task

#: The evaluation callback of a task, where it is not the plain AccuracyCallback (class paths, so that
#: naming one imports no Lightning).
CALLBACK_OF_TASK: dict[str, str] = {"maze": "lm_latent.evaluation.maze.MazeAccuracy"}

__all__ = ["CALLBACK_OF_TASK", "TASK_OF_DATASET", "TASKS", "is_correct", "resolve_task"]
