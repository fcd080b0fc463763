import pytest

from keras_mta.models.variants import ABLATION_TERMS
from keras_mta.models.variants import ABLATIONS
from keras_mta.models.variants import GENERATION_SUFFIXES
from keras_mta.models.variants import VARIANT_ALIASES
from keras_mta.models.variants import VARIANTS
from keras_mta.models.variants import split_variant
from keras_mta.models.variants import variant_name
from keras_mta.models.variants import variant_names


def test_every_variant_names_a_known_ablation():
    for variant in VARIANTS.values():
        assert variant.ablation in ABLATIONS
    assert set(ABLATION_TERMS) == set(ABLATIONS)


def test_older_names_are_read_as_todays():
    assert variant_name("kd_only") == "kd"
    assert variant_name("full_mta") == "mta"
    assert variant_names(["sft", "dsa_only"]) == ["sft", "kd_dsa"]
    for old, new in VARIANT_ALIASES.items():
        assert new in VARIANTS and old not in VARIANTS


def test_unknown_variant_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        variant_name("mtaa")


# --- Student generation per variant (issue 20) ---


def test_a_generation_suffix_is_read_with_its_variant():
    assert variant_name("kd_only+adaptive") == "kd+adaptive"
    assert split_variant("mta+on_policy") == ("mta", "on_policy")
    assert split_variant("full_mta") == ("mta", None)


@pytest.mark.parametrize(
    "name, words",
    [
        ("mta+sometimes", "Unknown student-generation suffix '+sometimes'"),
        ("sft+adaptive", "`sft` trains without a teacher"),
        ("mtb+adaptive", "Unknown variant 'mtb'"),
    ],
)
def test_a_bad_generation_suffix_is_refused(name, words):
    with pytest.raises(ValueError, match=words.replace("+", r"\+")):
        variant_name(name)


def test_the_suffixes_are_the_generation_modes():
    from keras_mta.generation import generation_schedule

    assert GENERATION_SUFFIXES == generation_schedule.MODES
