"""Column policies (exclude, hash, redact, truncate), applied in the daemon before data leaves it."""

from cdc.policy.columns import REDACTED, ColumnPolicies, PolicyViolation, column_policies
from cdc.policy.pump import PolicyPump, with_policies

__all__ = ["REDACTED", "ColumnPolicies", "PolicyPump", "PolicyViolation", "column_policies", "with_policies"]
