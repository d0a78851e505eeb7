"""``adapler::ContributionDrop``: AdapLeR's CP output layer, threshold and TokenDrop compaction in one node."""
from .reference import contribution_drop_reference, contribution_scores_reference
from .schema import DOMAIN, OP_TYPE, OP_VERSION

__all__ = ["DOMAIN", "OP_TYPE", "OP_VERSION", "contribution_drop_reference", "contribution_scores_reference"]
