"""Knobs: the hyperparameter space of a model template (Rafiki's six knob types).

A knob config (``{name: knob}``) crosses to the Rust side as JSON, one object per knob tagged by
its Python class name, exactly as ``common/src/domain/knobs.rs`` reads it::

    {"type": "FixedKnob", "value": v}
    {"type": "CategoricalKnob", "values": [v, ...]}
    {"type": "IntegerKnob", "min": i, "max": i, "is_exp": b}
    {"type": "FloatKnob", "min": f, "max": f, "is_exp": b}
    {"type": "PolicyKnob", "policy": "EARLY_STOP" | "SHARE_PARAMS" | ...}
    {"type": "ArchKnob", "items": [[v, ...], ...]}

Knob values are ``bool``, ``int``, ``float`` or ``str`` (the Rust ``KnobValue``); constructors
check everything the Rust side would reject, so a bad template fails at ``load`` with a message
naming the knob instead of somewhere in the platform.
"""

from __future__ import annotations

import math
import random
from typing import Any, Dict, List, Mapping, Union

POLICIES = ["SHARE_PARAMS", "EARLY_STOP", "SKIP_TRAIN", "QUICK_EVAL", "DOWNSCALE"]

# The Rust side reads integers as i64.
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class InvalidKnobError(ValueError):
    """A knob, knob config or knob value that the platform cannot use."""


class KnobValue:
    """A wrapped categorical value (SINGA-Auto's ``KnobValue``); knobs unwrap it."""

    def __init__(self, value: Union[str, int, float, bool]):
        self._value = _check_value(value)
        self._dtype = type(self._value)

    @property
    def value(self):
        return self._value

    @property
    def dtype(self) -> type:
        return self._dtype

    def __repr__(self):
        return f"KnobValue({self._value!r})"

    def __eq__(self, other):
        return isinstance(other, KnobValue) and (self.dtype, self.value) == (other.dtype, other.value)

    def __hash__(self):
        return hash((self._dtype, self._value))


CategoricalValue = Union[str, int, float, bool, KnobValue]


def _unwrap(value):
    return value.value if isinstance(value, KnobValue) else value


def _check_value(value):
    """A knob value as the Rust ``KnobValue`` holds it (numpy scalars become Python ones)."""
    value = _unwrap(value)
    item = getattr(value, "item", None)
    if item is not None and type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        value = item()
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        if not _I64_MIN <= value <= _I64_MAX:
            raise InvalidKnobError(f"knob value {value} does not fit in a 64-bit integer")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidKnobError(f"knob value {value} is not finite (JSON cannot carry it)")
        return value
    raise InvalidKnobError(
        f"knob value {value!r} has type `{type(value).__name__}`; "
        "only `int`, `float`, `bool` and `str` are supported"
    )


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class BaseKnob:
    """The base class of the knob types."""

    @property
    def value_type(self) -> type:
        raise NotImplementedError()

    def to_json(self) -> Dict[str, Any]:
        """This knob as the Rust side's JSON object."""
        raise NotImplementedError()

    def contains(self, value) -> bool:
        """True when ``value`` is a possible realisation of this knob."""
        raise NotImplementedError()

    def coerce(self, value):
        """``value`` as templates expect it (e.g. a JSON ``1`` for a float knob becomes ``1.0``)."""
        return value

    def sample(self, rng: random.Random):
        """A random realisation, for local testing; the platform's advisor does the real work."""
        raise NotImplementedError()

    def __eq__(self, other):
        return type(self) is type(other) and self.to_json() == other.to_json()

    def __hash__(self):
        return hash(repr(self.to_json()))

    def __repr__(self):
        fields = {k: v for k, v in self.to_json().items() if k != "type"}
        args = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{type(self).__name__}({args})"


class FixedKnob(BaseKnob):
    """A value that is not tuned."""

    def __init__(self, value: CategoricalValue):
        self._value = _check_value(value)

    @property
    def value(self):
        return self._value

    @property
    def value_type(self):
        return type(self._value)

    def to_json(self):
        return {"type": "FixedKnob", "value": self._value}

    def contains(self, value):
        return _same_value(value, self._value)

    def sample(self, rng):
        return self._value


class CategoricalKnob(BaseKnob):
    """One of ``values``, all of the same type (``int``, ``float``, ``bool`` or ``str``)."""

    def __init__(self, values: List[CategoricalValue]):
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise InvalidKnobError("`values` of a CategoricalKnob should be a list")
        values = [_check_value(v) for v in values]
        if not values:
            raise InvalidKnobError("a CategoricalKnob needs at least one value")
        types = {type(v) for v in values}
        if len(types) > 1:
            names = ", ".join(sorted(t.__name__ for t in types))
            raise InvalidKnobError(f"`values` should have elements of the same type, not {names}")
        self._values = values

    @property
    def values(self) -> list:
        return list(self._values)

    @property
    def value_type(self):
        return type(self._values[0])

    def to_json(self):
        return {"type": "CategoricalKnob", "values": list(self._values)}

    def contains(self, value):
        return any(_same_value(value, v) for v in self._values)

    def sample(self, rng):
        return rng.choice(self._values)


class IntegerKnob(BaseKnob):
    """An ``int`` in ``[value_min, value_max]``; ``is_exp`` tunes it on a log scale."""

    def __init__(self, value_min: int, value_max: int, is_exp: bool = False):
        for name, v in (("value_min", value_min), ("value_max", value_max)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise InvalidKnobError(f"`{name}` of an IntegerKnob should be an `int`, not {v!r}")
            _check_value(v)
        if value_min > value_max:
            raise InvalidKnobError("`value_max` should be at least `value_min`")
        if not isinstance(is_exp, bool):
            raise InvalidKnobError("`is_exp` should be a `bool`")
        if is_exp and value_min <= 0:
            raise InvalidKnobError("a log-scale (is_exp) IntegerKnob needs value_min > 0")
        self._value_min, self._value_max, self._is_exp = value_min, value_max, is_exp

    value_min = property(lambda self: self._value_min)
    value_max = property(lambda self: self._value_max)
    is_exp = property(lambda self: self._is_exp)

    @property
    def value_type(self):
        return int

    def to_json(self):
        return {"type": "IntegerKnob", "min": self._value_min, "max": self._value_max, "is_exp": self._is_exp}

    def contains(self, value):
        return (
            isinstance(value, int) and not isinstance(value, bool) and self._value_min <= value <= self._value_max
        )

    def coerce(self, value):
        # A JSON `3.0` from a lenient advisor is still the integer 3.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def sample(self, rng):
        lo, hi = self._value_min, self._value_max
        if not self._is_exp:
            return rng.randint(lo, hi)
        value = round(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        return min(max(value, lo), hi)


class FloatKnob(BaseKnob):
    """A ``float`` in ``[value_min, value_max]``; ``is_exp`` tunes it on a log scale."""

    def __init__(self, value_min: float, value_max: float, is_exp: bool = False):
        for name, v in (("value_min", value_min), ("value_max", value_max)):
            if not _is_number(v):
                raise InvalidKnobError(f"`{name}` of a FloatKnob should be a `float` or `int`, not {v!r}")
            if not math.isfinite(v):
                raise InvalidKnobError(f"`{name}` of a FloatKnob should be finite, not {v!r}")
        if value_min > value_max:
            raise InvalidKnobError("`value_max` should be at least `value_min`")
        if not isinstance(is_exp, bool):
            raise InvalidKnobError("`is_exp` should be a `bool`")
        if is_exp and value_min <= 0:
            raise InvalidKnobError("a log-scale (is_exp) FloatKnob needs value_min > 0")
        self._value_min, self._value_max, self._is_exp = float(value_min), float(value_max), is_exp

    value_min = property(lambda self: self._value_min)
    value_max = property(lambda self: self._value_max)
    is_exp = property(lambda self: self._is_exp)

    @property
    def value_type(self):
        return float

    def to_json(self):
        return {"type": "FloatKnob", "min": self._value_min, "max": self._value_max, "is_exp": self._is_exp}

    def contains(self, value):
        return _is_number(value) and self._value_min <= value <= self._value_max

    def coerce(self, value):
        return float(value) if _is_number(value) else value

    def sample(self, rng):
        lo, hi = self._value_min, self._value_max
        if not self._is_exp:
            return rng.uniform(lo, hi)
        return min(max(math.exp(rng.uniform(math.log(lo), math.log(hi))), lo), hi)


class PolicyKnob(BaseKnob):
    """A ``bool`` the platform sets to ask the model for a behaviour (e.g. ``EARLY_STOP``)."""

    def __init__(self, policy: str):
        if policy not in POLICIES:
            raise InvalidKnobError(f"policy should be one of {POLICIES}, not {policy!r}")
        self._policy = policy

    @property
    def policy(self) -> str:
        return self._policy

    @property
    def value_type(self):
        return bool

    def to_json(self):
        return {"type": "PolicyKnob", "policy": self._policy}

    def contains(self, value):
        return isinstance(value, bool)

    def sample(self, rng):
        # Policies are off unless the platform turns them on.
        return False


class ArchKnob(BaseKnob):
    """A model architecture: a fixed-length list, one value chosen from ``items[i]`` at index i."""

    def __init__(self, items: List[List[CategoricalValue]]):
        if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
            raise InvalidKnobError("`items` of an ArchKnob should be a list of lists")
        checked = []
        for i, choices in enumerate(items):
            if isinstance(choices, (str, bytes)) or not hasattr(choices, "__iter__"):
                raise InvalidKnobError(f"item {i} of an ArchKnob should be a list of values")
            choices = [_check_value(v) for v in choices]
            if not choices:
                raise InvalidKnobError(f"item {i} of an ArchKnob has no choices")
            checked.append(choices)
        if not checked:
            raise InvalidKnobError("an ArchKnob needs at least one item")
        self._items = checked

    @property
    def items(self) -> List[list]:
        return [list(choices) for choices in self._items]

    @property
    def value_type(self):
        return list

    def __len__(self):
        return len(self._items)

    def to_json(self):
        return {"type": "ArchKnob", "items": self.items}

    def contains(self, value):
        return (
            isinstance(value, list)
            and len(value) == len(self._items)
            and all(any(_same_value(v, c) for c in choices) for v, choices in zip(value, self._items))
        )

    def sample(self, rng):
        return [rng.choice(choices) for choices in self._items]


def _same_value(a, b) -> bool:
    # `True == 1` in Python; the Rust side tells them apart, so must we.
    return type(a) is type(b) and a == b


KnobConfig = Dict[str, BaseKnob]
Knobs = Dict[str, Any]

_KNOB_TYPES = {
    "FixedKnob": lambda d: FixedKnob(d["value"]),
    "CategoricalKnob": lambda d: CategoricalKnob(d["values"]),
    "IntegerKnob": lambda d: IntegerKnob(d["min"], d["max"], d.get("is_exp", False)),
    "FloatKnob": lambda d: FloatKnob(d["min"], d["max"], d.get("is_exp", False)),
    "PolicyKnob": lambda d: PolicyKnob(d["policy"]),
    "ArchKnob": lambda d: ArchKnob(d["items"]),
}


def validate_knob_config(knob_config) -> KnobConfig:
    """Checks that ``knob_config`` maps knob names (valid keyword argument names) to knobs."""
    if not isinstance(knob_config, Mapping):
        raise InvalidKnobError(
            f"get_knob_config() should return a dict of knob name to knob, not `{type(knob_config).__name__}`"
        )
    for name, knob in knob_config.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidKnobError(f"knob name {name!r} is not a valid Python identifier")
        if not isinstance(knob, BaseKnob):
            raise InvalidKnobError(
                f"knob `{name}` is a `{type(knob).__name__}`, not a knob "
                "(FixedKnob, CategoricalKnob, IntegerKnob, FloatKnob, PolicyKnob or ArchKnob)"
            )
    return dict(knob_config)


def knob_config_to_json(knob_config: KnobConfig) -> Dict[str, Dict[str, Any]]:
    """The knob config as the Rust ``KnobConfig`` JSON (a dict, ready for ``json.dumps``)."""
    return {name: knob.to_json() for name, knob in sorted(validate_knob_config(knob_config).items())}


def knob_config_from_json(data: Mapping[str, Mapping[str, Any]]) -> KnobConfig:
    """The inverse of :func:`knob_config_to_json`."""
    config = {}
    for name, knob in data.items():
        kind = knob.get("type") if isinstance(knob, Mapping) else None
        if kind not in _KNOB_TYPES:
            raise InvalidKnobError(f"knob `{name}` has unknown type {kind!r}")
        try:
            config[name] = _KNOB_TYPES[kind](knob)
        except KeyError as e:
            raise InvalidKnobError(f"knob `{name}` ({kind}) lacks field {e}") from None
    return config


def coerce_knobs(knob_config: KnobConfig, knobs: Mapping[str, Any]) -> Knobs:
    """Checks concrete ``knobs`` against ``knob_config`` (exactly one in-space value per knob)
    and converts them to the Python types templates expect."""
    unknown = sorted(set(knobs) - set(knob_config))
    if unknown:
        raise InvalidKnobError(f"knob(s) {', '.join(unknown)} are not in the knob config")
    missing = sorted(set(knob_config) - set(knobs))
    if missing:
        raise InvalidKnobError(f"knob(s) {', '.join(missing)} have no value")
    out = {}
    for name, knob in knob_config.items():
        value = knob.coerce(knobs[name])
        if not knob.contains(value):
            raise InvalidKnobError(f"knob `{name}`: value {value!r} is outside its space {knob!r}")
        out[name] = value
    return out


def complete_knobs(knob_config: KnobConfig, knobs: Mapping[str, Any]) -> Knobs:
    """``knobs`` with the values that need no choosing filled in where missing: a ``FixedKnob``'s
    value and ``False`` for a ``PolicyKnob`` (a checkpoint is served with only the knobs its user
    gave). Other missing knobs stay missing, for :func:`coerce_knobs` to name."""
    out = dict(knobs)
    for name, knob in knob_config.items():
        if name in out:
            continue
        if isinstance(knob, FixedKnob):
            out[name] = knob.value
        elif isinstance(knob, PolicyKnob):
            out[name] = False
    return out


def sample_knobs(knob_config: KnobConfig, rng: random.Random = None) -> Knobs:
    """Random knob values from ``knob_config`` (log scale respected; policies off)."""
    rng = rng or random.Random()
    return {name: knob.sample(rng) for name, knob in knob_config.items()}
