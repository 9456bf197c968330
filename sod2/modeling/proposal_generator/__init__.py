from .crpn import CRPN, CRPNHead  # noqa: F401  (registers CRPN in PROPOSAL_GENERATOR_REGISTRY)
