"""The locks' rules (requirements/locks.py); `make lint` runs the check on the real locks."""

from __future__ import annotations

import locks

PYPROJECT: dict[str, object] = {
    "build-system": {"requires": ["setuptools>=68"]},
    "project": {
        "optional-dependencies": {
            "ca": ["cryptography>=43", "flask>=3"],
            "client": ["requests>=2.32"],
            "dev": ["hello-mtls[ca,client]", "pytest>=8", "Flask>=3"],
        }
    },
}
DEV = locks.Lock("dev.txt", ("dev", locks.BUILD))


def lock_text(inputs: list[str], pinned: dict[str, str]) -> str:
    body = "".join(f"{name}=={v} \\\n    --hash=sha256:ab\n" for name, v in pinned.items())
    return locks.HEADER + "".join(f"{locks.INPUT}{line}\n" for line in inputs) + "\n" + body


def test_inputs_expand_the_projects_own_extras_and_the_build_backend() -> None:
    assert locks.inputs(DEV, PYPROJECT) == [
        "cryptography>=43",
        "Flask>=3",
        "flask>=3",
        "pytest>=8",
        "requests>=2.32",
        "setuptools>=68",
    ]


def test_a_lock_made_from_its_inputs_has_no_problems() -> None:
    wanted = ["cryptography>=43", "requests>=2.32"]
    text = lock_text(wanted, {"cryptography": "50.0.2", "requests": "2.32.5", "idna": "3.10"})
    assert locks.problems(DEV, text, wanted) == []


def test_a_lock_made_from_other_inputs_is_a_problem_even_when_its_pins_satisfy() -> None:
    text = lock_text(["cryptography>=43", "jinja2>=3"], {"cryptography": "50.0.2", "jinja2": "3.1"})
    assert locks.problems(DEV, text, ["cryptography>=43"]) == [
        "dev.txt: made from other requirements (new: [], gone: ['jinja2>=3'])"
    ]


def test_an_unmet_pin_and_a_pin_without_hash_are_problems() -> None:
    wanted = ["kopf>=1.37", "requests>=2.32"]
    text = lock_text(wanted, {"kopf": "1.36.0"}) + "idna==3.10\n"
    assert locks.problems(DEV, text, wanted) == [
        "dev.txt: kopf>=1.37 (pinned: 1.36.0)",
        "dev.txt: requests>=2.32 (pinned: None)",
        "dev.txt: a pin without a hash",
    ]


def test_names_compare_normalised() -> None:
    assert locks.unmet(["prometheus_client>=0.20"], {"prometheus-client": "0.26.0"}) == []
