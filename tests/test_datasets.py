"""Real benchmark files under CUMA_DATA_DIR, and the error users see when they are missing."""

import pytest

from cuma_env import DataFileNotFoundError, load_problems, load_source, make_source

EXPECTED = {"math": 11998, "math500": 500, "gsm8k_train": 7473, "gsm8k_test": 1319, "aime24": 30, "amc23": 40}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dataset_sizes_and_fields(data_dir, name):
    problems = load_problems(name, data_dir)
    assert len(problems) == EXPECTED[name]
    assert all(p.prompt and p.answer is not None for p in problems)
    assert len({p.id for p in problems}) == len(problems)


def test_math_pool_levels_match_the_data_readme(data_dir):
    pool = load_source("math", data_dir)
    assert [pool.size(lv) for lv in range(1, 6)] == [958, 2152, 2618, 2776, 3494]
    assert [load_source("math500", data_dir).size(lv) for lv in range(1, 6)] == [43, 90, 105, 128, 134]
    assert load_source("math", data_dir, levels=[1, 2]).levels == (1, 2)


def test_answers_are_normalised_from_their_formats(data_dir):
    gsm = load_problems("gsm8k_test", data_dir)
    assert gsm[0].answer == "18" and gsm[0].level is None
    assert all("," not in p.answer for p in gsm)
    aime = load_problems("aime24", data_dir)
    assert all(not p.answer.startswith("0") for p in aime)
    amc = load_problems("amc23", data_dir)
    assert amc[0].answer == "27"


def test_missing_data_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DataFileNotFoundError, match=r"math500_test.jsonl.*CUMA_DATA_DIR"):
        load_problems("math500", tmp_path)
    monkeypatch.delenv("CUMA_DATA_DIR", raising=False)
    with pytest.raises(DataFileNotFoundError, match="CUMA_DATA_DIR"):
        load_problems("math")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_problems("mmlu", tmp_path)


def test_catalog_sources(data_dir):
    assert make_source("CuMa-Math-v0", "test", data_dir=data_dir).name == "math500"
    assert make_source("CuMa-Arith-v0", "test").split == "test"
    with pytest.raises(ValueError, match="no difficulty levels"):
        make_source("CuMa-GSM8K-v0", levels=[1], data_dir=data_dir)
    with pytest.raises(ValueError, match="splits"):
        make_source("CuMa-AIME24-v0", "train", data_dir=data_dir)
