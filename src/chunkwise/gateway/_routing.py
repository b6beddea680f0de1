"""Which upstream gets a request: least outstanding requests among the healthy ones serving the model.

An upstream is skipped while it fails its active health check, and for a cooldown after a connect error
or a 5xx (passive ejection). When every upstream of a model is down the gateway still tries them, best
first: a request answered late beats one refused outright.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ._config import UpstreamConfig
from ._upstream import Origin

__all__ = ["Router", "Upstream"]


class Upstream:
    __slots__ = (
        "api_key",
        "config",
        "ejected_until",
        "healthy",
        "models",
        "name",
        "origin",
        "outstanding",
        "url",
    )

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self.name = config.name
        self.url = config.url
        self.api_key = config.api_key
        self.models: frozenset[str] = frozenset(config.models)
        self.healthy = True
        self.ejected_until = 0.0
        self.outstanding = 0
        headers = {"content-type": "application/json"}
        if config.api_key:
            headers["authorization"] = f"Bearer {config.api_key}"
        #: The address, and the headers of every proxied request, built once.
        self.origin = Origin(config.url, headers)

    def available(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, outstanding={self.outstanding}, healthy={self.healthy})"


class Router:
    def __init__(self, upstreams: Iterable[UpstreamConfig], *, ejection_cooldown: float) -> None:
        self.upstreams = [Upstream(config) for config in upstreams]
        self.ejection_cooldown = ejection_cooldown
        # Breaks ties in turn, so that idle upstreams share the load instead of the first taking it all.
        self._turn = 0

    def models(self) -> list[str]:
        """Every model some upstream serves, in the order first seen."""
        seen: dict[str, None] = {}
        for upstream in self.upstreams:
            seen.update(dict.fromkeys(sorted(upstream.models)))
        return list(seen)

    def serves(self, model: str) -> bool:
        return any(model in upstream.models for upstream in self.upstreams)

    def candidates(self, model: str) -> list[Upstream]:
        """The upstreams to try for ``model``, best first: available ones by fewest outstanding requests."""
        now = time.monotonic()
        self._turn += 1
        count = len(self.upstreams)
        turn = self._turn
        ranked = [
            (not upstream.available(now), upstream.outstanding, (index - turn) % count, upstream)
            for index, upstream in enumerate(self.upstreams)
            if model in upstream.models
        ]
        ranked.sort(key=lambda entry: entry[:3])
        return [entry[3] for entry in ranked]

    def add(self, upstream: Upstream) -> None:
        self.upstreams.append(upstream)

    def remove(self, upstream: Upstream) -> None:
        """Out of rotation; requests already sent to it run to their end."""
        self.upstreams.remove(upstream)

    def eject(self, upstream: Upstream) -> None:
        upstream.ejected_until = time.monotonic() + self.ejection_cooldown
