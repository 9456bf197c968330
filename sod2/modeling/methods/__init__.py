"""The four methods of sod2, one package each, on top of the baselines of ``sod2.modeling``.

==================  ==========================================  =====================================
method              package (its ``__init__`` is the method's    how it enters its baseline
                    page: paper parts -> classes -> configs)
==================  ==========================================  =====================================
CFINet              :mod:`sod2.modeling.methods.cfinet`          see the package page
SR-TOD              :mod:`sod2.modeling.methods.srtod`           see the package page
Foreground Probing  :mod:`sod2.modeling.methods.fgprobe`         see the package page
Better Sampling     :mod:`sod2.modeling.methods.better_sampling` see the package page
==================  ==========================================  =====================================

Rule (tests/test_architecture.py): a method imports the baselines and ``sod2.layers``, never
another method; no baseline imports a method. ``sod2/__init__.py`` imports this package, which
registers the methods' classes in Detectron2's registries.
"""
from . import better_sampling, cfinet, fgprobe, srtod  # noqa: F401
