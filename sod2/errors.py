"""
The one exception type for input that a user gave and that sod2 cannot use.

Every tool catches :class:`UserError` at its top level and prints its message as one line
(``error: <message>``) with exit status 2, instead of a traceback: the message names the
file, the config key or the entry that is wrong. Library code raises a subclass (or
``UserError`` itself) where the cause is the user's input (a config value, a file, a
dataset entry, a checkpoint of another model), and a plain exception where the cause is a
bug. ``UserError`` is a ``ValueError``, so code that caught ``ValueError`` still works.

Subclasses: :class:`sod2.data.io.DataFormatError` (images, annotation files),
:class:`sod2.engine.lazy_train.ConfigError` (config files and overrides),
:class:`sod2.utils.convert.ConversionError` (weight conversion),
:class:`sod2.evaluation.coco_json.EvaluationInputError` (results and ground-truth files).
"""

__all__ = ["UserError"]


class UserError(ValueError):
    """Input that cannot be used; the message is one line naming the file, key or entry."""
