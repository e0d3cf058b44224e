"""What a CEN model learned: which channels each modality gives away, and why.

``scaling_factors``: per-site statistics of gamma; ``feature_maps``: the paper's channel-group
view of the features; ``theorem``: Theorem 1's collapse probability beside the observed one,
from the ``|dL/dy|`` that ``OutputGradientMonitor`` records; ``knockout``: the exchange switched
off at chosen sites of a trained model; ``plots`` (needs the ``plot``
extra): the figures.
"""

from cenfusion.analysis.exchange_stats import ExchangeStats, exchange_statistics
from cenfusion.analysis.feature_maps import (
    ChannelGroup,
    GroupFeatures,
    channel_groups,
    display_images,
    group_feature_maps,
    sample_feature_groups,
    site_features,
)
from cenfusion.analysis.knockout import (
    exchanging_sites_by_stage,
    matches_site,
    switch_exchange_off,
)
from cenfusion.analysis.output_gradients import OutputGradientMonitor
from cenfusion.analysis.probes import ExchangeProbe, TheoremProbe
from cenfusion.analysis.scaling_factors import (
    SiteStatistics,
    find_site,
    format_statistics,
    gamma_statistics,
    scaling_factors,
    site_statistics,
    site_thresholds,
    spread_sites,
)
from cenfusion.analysis.theorem import AttractionCheck, attraction_check, attraction_probability

__all__ = [
    "AttractionCheck",
    "ChannelGroup",
    "ExchangeProbe",
    "ExchangeStats",
    "GroupFeatures",
    "OutputGradientMonitor",
    "SiteStatistics",
    "TheoremProbe",
    "attraction_check",
    "attraction_probability",
    "channel_groups",
    "exchange_statistics",
    "exchanging_sites_by_stage",
    "find_site",
    "format_statistics",
    "gamma_statistics",
    "group_feature_maps",
    "matches_site",
    "display_images",
    "sample_feature_groups",
    "scaling_factors",
    "site_features",
    "site_statistics",
    "site_thresholds",
    "spread_sites",
    "switch_exchange_off",
]
