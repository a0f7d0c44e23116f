"""benchmarks.startup: time goes to the innermost active phase, and the table shows it."""

from benchmarks import startup


def test_innermost_phase_gets_the_time(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(startup, "CLOCK", lambda: now[0])
    clock = startup.PhaseClock()

    def restore():
        now[0] += 2.0  # 2 s restoring, then a nested 3 s compile
        compile_()
        now[0] += 1.0

    def compile_():
        now[0] += 3.0

    compile_ = clock.wrap(compile_, "compile")
    restore = clock.wrap(restore, "restore")
    now[0] += 0.5  # work before
    restore()
    clock.pop() if len(clock.stack) > 1 else clock._switch()
    assert clock.totals["restore"] == 3.0 and clock.totals["compile"] == 3.0
    assert clock.totals["work"] == 0.5 and sum(clock.totals.values()) == 6.5


def test_table_has_a_row_per_version_and_command():
    phases = {k: 1.0 for k in (*startup.PHASES, "total")}
    rows = {"before": {"predict": {"whole_s": 9.0, "whole_cpu_s": 7.5, "phases_s": phases}},
            "after": {"predict": {"whole_s": 3.0, "whole_cpu_s": 2.5, "phases_s": phases}}}
    lines = startup.table(rows).splitlines()
    assert len(lines) == 4 and "| predict | before | 9.0 | 7.5 |" in lines[2]
    assert lines[3].startswith("| predict | after | 3.0 | 2.5 |")
