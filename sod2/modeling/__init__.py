"""Model components, registered in Detectron2's registries on import."""
