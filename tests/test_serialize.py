"""LLMTime-style serializer: round trip, clipping reports, strict decoding, token budget, prompt format."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from specllm.errors import InputError
from specllm.serialize import (
    BUDGET_FIX,
    SerializerConfig,
    build_example,
    check_budget,
    decode,
    encode,
    token_counts,
    tokens_per_value,
)

SEPARATORS = st.sampled_from([("|", ","), ("", ","), (" ", " ,"), ("::", ";"), ("|", "\n"), ("", " ")])


@st.composite
def configs(draw) -> SerializerConfig:
    base = draw(st.sampled_from([2, 3, 8, 10, 16, 36]))
    precision = draw(st.integers(0, 3))
    int_digits = draw(st.integers(1, 3))
    digit_sep, value_sep = draw(SEPARATORS)
    return SerializerConfig(base=base, precision=precision, int_digits=int_digits, digit_sep=digit_sep,
                            value_sep=value_sep, signed=draw(st.booleans()))


def in_range(cfg: SerializerConfig, n_max: int = 40):
    return st.lists(st.floats(cfg.min_value, cfg.max_value, allow_nan=False, allow_infinity=False), max_size=n_max)


@st.composite
def config_and_values(draw):
    cfg = draw(configs())
    return cfg, np.array(draw(in_range(cfg)), dtype=np.float64)


@settings(max_examples=300, deadline=None)
@given(config_and_values())
def test_round_trip_within_half_a_bin(case):
    cfg, values = case
    enc = encode(values, cfg)
    back = decode(enc.text, cfg)
    assert back.shape == values.shape
    assert enc.n_clipped == enc.n_negative == 0
    tol = cfg.bin_width / 2 * (1 + 1e-9) + 1e-12
    assert np.all(np.abs(back - values) <= tol), (enc.text, values, back)
    # decoding lands on bin centres, so re-encoding reproduces the text exactly
    assert encode(back, cfg).text == enc.text


@settings(max_examples=200, deadline=None)
@given(configs(), st.data())
def test_every_value_has_the_fixed_width(cfg, data):
    values = data.draw(in_range(cfg, 10).filter(len))
    parts = encode(values, cfg).text.split(cfg.value_sep)
    assert len(parts) == len(values)
    for part in parts:
        digits = part.lstrip("-")
        n = len(digits.split(cfg.digit_sep)) if cfg.digit_sep else len(digits)
        assert n == cfg.n_digits


@settings(max_examples=200, deadline=None)
@given(configs(), st.data())
def test_out_of_range_values_are_clipped_and_counted(cfg, data):
    inside = data.draw(in_range(cfg, 10))
    big = data.draw(st.lists(st.floats(cfg.max_value + cfg.bin_width, 1e6 * (cfg.max_value + 1)), max_size=5))
    small = data.draw(st.lists(st.floats(-1e6 * (cfg.max_value + 1), cfg.min_value - cfg.bin_width), max_size=5))
    values = np.array(inside + big + small, dtype=np.float64)
    order = np.array(data.draw(st.permutations(range(values.size))), dtype=int)
    values = values[order]
    enc = encode(values, cfg)
    back = decode(enc.text, cfg)
    if cfg.signed:
        assert (enc.n_clipped, enc.n_negative) == (len(big) + len(small), 0)
    else:
        assert (enc.n_clipped, enc.n_negative) == (len(big), len(small))
    assert sorted(enc.clipped_index) == sorted(np.flatnonzero(np.isin(order, range(len(inside), values.size))).tolist())
    np.testing.assert_allclose(back[values > cfg.max_value], cfg.max_value)
    np.testing.assert_allclose(back[values < cfg.min_value], cfg.min_value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(config_and_values(), st.sampled_from("#@!?%x"), st.data())
def test_corrupted_text_is_rejected(case, bad, data):
    cfg, values = case
    assume(values.size > 0)
    assume(bad not in cfg.digit_sep + cfg.value_sep and not (bad == "x" and cfg.base > 33))
    text = encode(values, cfg).text
    pos = data.draw(st.integers(0, len(text)))
    with pytest.raises(ValueError, match="value [0-9]+ at character [0-9]+"):
        decode(text[:pos] + bad + text[pos:], cfg)


def test_paper_examples():
    cfg = SerializerConfig()
    assert encode([4.56], cfg).text == "4|5|6"
    assert encode([4.56, 0.7, 0.0], cfg).text == "4|5|6,0|7|0,0|0|0"
    assert encode([-1.25], SerializerConfig(signed=True)).text == "-1|2|5"
    assert encode([4.56, 12.0], SerializerConfig(digit_sep="")).text == "456,999"
    assert encode([2.5], SerializerConfig(base=2, precision=1, int_digits=2)).text == "1|0|1"
    assert encode([255.0], SerializerConfig(base=16, precision=0, int_digits=2, digit_sep="")).text == "ff"
    np.testing.assert_allclose(decode("4|5|6,0|7|0,", cfg), [4.56, 0.7])  # one trailing separator is fine
    assert decode("", cfg).size == 0


def test_clipping_is_reported():
    enc = encode([4.56, 12.3, -0.5, -0.001, 9.996], SerializerConfig())
    assert enc.text == "4|5|6,9|9|9,0|0|0,0|0|0,9|9|9"
    assert (enc.n_clipped, enc.n_negative, enc.clipped_index) == (2, 1, (1, 2, 4))  # -0.001 rounds to 0: not lost


@pytest.mark.parametrize("text, message", [
    ("4|5", r"value 0 at character 0: '4\|5' has 2 digits, expected 3"),
    ("0|1|2,4|x|6", r"value 1 at character 6: '4\|x\|6' contains 'x'"),
    ("-4|5|6", "has a sign but the serializer is unsigned"),
    ("4|5|6,,1|2|3", r"value 1 at character 6: '' has"),
    ("4|5|6;1|2|3", r"value 0 at character 0: .* has 5 digits"),
    ("4|5|6 ", r"contains '6 '"),
])
def test_malformed_text_names_the_token_and_position(text, message):
    with pytest.raises(ValueError, match=message):
        decode(text, SerializerConfig())


def test_non_finite_values_are_refused():
    with pytest.raises(ValueError, match="value 1 is nan"):
        encode([1.0, float("nan")], SerializerConfig())


@pytest.mark.parametrize("kwargs", [
    {"digit_sep": "1"}, {"value_sep": ""}, {"value_sep": "|"}, {"digit_sep": "-"}, {"base": 16, "digit_sep": "a"},
    {"base": 37}, {"base": 36, "precision": 8, "int_digits": 8}, {"int_digits": 0}, {"target_decimals": 0},
    {"precision": 9}, {"max_context_share": 0.0}, {"signed": 1},
])
def test_ambiguous_or_impossible_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        SerializerConfig(**kwargs)


def test_the_library_refuses_a_field_with_the_params_schema_s_own_words():
    """One source for each field's range: SerializerConfig says what `make reproduce` says of params.yaml."""
    from specllm.schema import SCHEMA

    for key, bad in (("base", 1), ("precision", -1), ("target_decimals", 0), ("context_tokens", 0)):
        with pytest.raises(ValueError) as err:
            SerializerConfig(**{key: bad})
        assert str(err.value) == f"serialize.{key} {SCHEMA[f'serialize.{key}'](bad)}"


def test_config_from_params_yaml(params):
    cfg = SerializerConfig.from_params(params)
    assert cfg.base == params["serialize.base"] and cfg.digit_sep == params["serialize.digit_sep"]
    assert cfg.context_tokens == params["serialize.context_tokens"]
    with pytest.raises(AttributeError):  # frozen (dataclasses.FrozenInstanceError)
        cfg.base = 2


# --- tokenizer-aware parts, with the tiny model's real character tokenizer --------------------------


@pytest.fixture(scope="module")
def char_tokenizer():
    from specllm.model.tiny import build_tokenizer

    return build_tokenizer()


def test_token_counts_and_tokens_per_value(char_tokenizer):
    np.testing.assert_array_equal(token_counts(["abc", "4|5|6,0|1|2", ""], char_tokenizer), [3, 11, 0])
    assert token_counts([], char_tokenizer).size == 0
    assert tokens_per_value(np.array([4.56, 1.0]), SerializerConfig(), char_tokenizer) == 6.0  # "4|5|6," per value
    assert tokens_per_value(np.array([4.56, 1.0]), SerializerConfig(digit_sep=""), char_tokenizer) == 4.0


def test_check_budget_names_the_sample_and_the_fix():
    ok = check_budget([100, 573], 8192, 0.07, "x.npy")
    assert ok["max_tokens"] == 573 and ok["max_share_used"] == pytest.approx(573 / 8192)
    with pytest.raises(InputError) as err:
        check_budget([100, 574, 700, 20], 8192, 0.07, "data/prepared/train_flux.npy", names=["a", "b", "c", "d"])
    e = err.value
    assert e.file == "data/prepared/train_flux.npy" and e.field == "serialize.max_context_share"
    assert "2 of 4 samples" in e.problem and "sample c" in e.problem and "700" in e.problem
    assert e.fix == BUDGET_FIX == "lower spectrum.n_points, or precision, or raise serialize.max_context_share"


def test_build_example_uses_the_chat_template(char_tokenizer):
    cfg = SerializerConfig(prompt="Spectrum:", target_decimals=3)
    ex = build_example("4|5|6,0|7|0", 0.12345, cfg, char_tokenizer)
    assert ex == {"prompt": "<s>user\nSpectrum: 4|5|6,0|7|0</s>\n<s>assistant\n", "target": "Redshift: 0.123"}
    n = token_counts([ex["prompt"] + ex["target"]], char_tokenizer)[0]
    assert n == len(ex["prompt"] + ex["target"]) - 2 * (len("<s>") - 1) - (len("</s>") - 1)  # specials are one token


def test_build_example_without_chat_template(char_tokenizer):
    from specllm.model.tiny import build_tokenizer

    plain = build_tokenizer()
    plain.chat_template = None
    ex = build_example("1|0|0", 2.0, SerializerConfig(prompt="P", target_decimals=1), plain)
    assert ex == {"prompt": "P 1|0|0\n", "target": "Redshift: 2.0"}
