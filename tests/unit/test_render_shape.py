"""Issue 14 item 13: `hotline check` compares the rendered files' sections and extensions with the
expected set, so a config value can neither add nor drop one (admin/render_shape.py)."""

from __future__ import annotations

from pathlib import Path

from admin.check import check_config, render_files
from admin.render_shape import shape_problems
from model.config import Config
from model.loading import load_config

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


def rendered(cfg: Config, with_sim: bool = False) -> dict[str, str]:
    return render_files(cfg, {k: "checkcheckcheck1" for k in cfg.seats}, ami_secret="c", with_sim=with_sim,
                        carrier_secrets_={k: "c" for k in cfg.carriers}, ami_secrets={"apply": "c", "sim": "c"})


def test_the_shipped_config_renders_exactly_the_expected_shape() -> None:
    cfg = load_config(SHIPPED)
    assert shape_problems(cfg, rendered(cfg)) == []
    assert shape_problems(cfg, rendered(cfg, with_sim=True)) == []


def test_a_name_that_slipped_past_the_loader_cannot_add_a_section_or_an_extension() -> None:
    """As if the name rules had a hole: seat names carrying a PJSIP section and a dialplan line (the
    review's two findings), a queue name carrying a dialplan line."""
    cfg = load_config(SHIPPED)
    cfg.seats["1009\n[evil](seat-endpoint)\nauth=x"] = cfg.seats["1003"]
    cfg.seats["1008\nexten => 666,1,System(id)"] = cfg.seats["1003"]
    found = "\n".join(str(p) for p in shape_problems(cfg, rendered(cfg)))
    assert "section [evil]" in found
    assert "extension '666'" in found
    secrets = {k: "checkcheckcheck1" for k in cfg.seats}
    assert any("section [evil]" in str(p) for p in check_config(cfg, seat_secrets=secrets))
    cfg = load_config(SHIPPED)
    cfg.queues["expert\nexten => 666,1,System(id)"] = cfg.queues.pop("expert")
    problems = [str(p) for p in check_config(cfg, seat_secrets={k: "checkcheckcheck1" for k in cfg.seats})
                if p.file.startswith("rendered")]
    assert any("[hotline-queue-expert" in p for p in problems), problems


def test_a_dropped_or_foreign_part_of_the_render_is_found() -> None:
    cfg = load_config(SHIPPED)
    files = rendered(cfg)
    files["pjsip.conf"] = files["pjsip.conf"].replace("[1002-auth]", "[1002-auth-gone]")
    files["extensions.conf"] = files["extensions.conf"].replace("[hotline-survey]", "[hotline-survey-x]")
    files["extensions.conf"] += "\n[hotline-seats]\nexten => 0000,1,Dial(PJSIP/telecom/110)\n"
    found = "\n".join(str(p) for p in shape_problems(cfg, files))
    assert "section [1002-auth] of seat 1002 is missing" in found
    assert "context [hotline-survey] is missing" in found
    assert "section [hotline-survey-x]" in found
    assert "extension '0000' in [hotline-seats]" in found
