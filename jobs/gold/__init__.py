"""Gold layer: member features, RFM and tiers, tags, lifecycle and daily KPIs as of D."""
