"""Fixed vocabularies of the feature definitions (`features.sql`) and of the registry."""

from __future__ import annotations

#: network types that are data-centre hosting, and that anonymise (VPN/proxy, Tor)
HOSTING = ("hosting",)
ANONYMISING = ("vpn_proxy", "tor")

#: network_type values of the contract, in the order their features are declared (each gets
#: a share of API requests, and of console logins, in the network-mix profile)
NETWORK_TYPES = ("residential", "mobile", "business", "hosting", "vpn_proxy", "tor", "unknown")
LOGIN_NETWORK_TYPES = ("residential", "mobile", "business", "hosting", "vpn_proxy", "tor")

#: prompt languages with most API traffic worldwide (ISO 639-1), restricted or not: each gets
#: a share in the prompt-language profile
PROFILE_LANGUAGES = ("en", "zh", "ru", "fa", "es", "pt", "fr", "de", "ja", "ko", "ar", "vi")

#: cumulative tokens of the "fast ramp" feature (days to the first 10M tokens)
RAMP_TOKENS = 10_000_000
