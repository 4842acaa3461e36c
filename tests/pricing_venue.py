"""The default venue with every instrument's pricing spec changed: shared by the valuation tests."""
import msgspec

from perpcore import default_config


def venue(**pricing):
    cfg = default_config()
    return msgspec.structs.replace(cfg, instruments={
        s: msgspec.structs.replace(spec, pricing=msgspec.structs.replace(spec.pricing, **pricing))
        for s, spec in cfg.instruments.items()})
