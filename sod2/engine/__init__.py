"""Training and evaluation of LazyConfigs: :mod:`sod2.engine.lazy_train` (what
``tools/lazyconfig_train_net.py`` runs). Not imported by ``import sod2``."""
