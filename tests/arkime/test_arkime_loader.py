"""Plugin loading: Arkime's file rules, __main__, injected modules, broken files."""
import sys

from sensor.arkime.loader import MAX_FILES_PER_DIR, discover, load_plugins

ORDER_PLUGIN = """
import arkime
arkime.register_save(lambda s, f: None)
ORDER.append({name!r})
"""


def test_discover_rules(tmp_path, write_plugin):
    a, b = tmp_path / "a", tmp_path / "b"
    write_plugin("zeta.py", "", a)
    write_plugin("alpha.py", "", a)
    write_plugin(".hidden.py", "", a)
    write_plugin("notes.txt", "", a)
    write_plugin("plugin.lua", "", a)
    write_plugin("off.py", "", a)
    write_plugin("alpha.py", "", b)  # same name in a later dir: first wins
    write_plugin("beta.py", "", b)
    (a / "dir.py").mkdir()
    found = discover([a, tmp_path / "missing", b], disabled=["off.py"])
    assert found == [a / "alpha.py", a / "zeta.py", b / "beta.py"]


def test_at_most_100_files_per_dir(tmp_path, write_plugin):
    for i in range(MAX_FILES_PER_DIR + 3):
        write_plugin(f"p{i:03d}.py", "", tmp_path)
    found = discover([tmp_path])
    assert len(found) == 100 and found[-1].name == "p099.py"


def test_load_order_dirs_then_files(rt, tmp_path, write_plugin, monkeypatch):
    import builtins
    order = []
    monkeypatch.setattr(builtins, "ORDER", order, raising=False)
    d = tmp_path / "parsers"
    for name in ("b.py", "a.py"):
        write_plugin(name, ORDER_PLUGIN.format(name=name), d)
    extra = write_plugin("extra.py", ORDER_PLUGIN.format(name="extra.py"), tmp_path / "plugins")
    report = load_plugins(rt, dirs=[d], files=[extra])
    assert report.ok and order == ["a.py", "b.py", "extra.py"]


def test_runs_as_main_with_modules_injected(rt, tmp_path, write_plugin):
    p = write_plugin("main.py", """
        import sys, arkime, arkime_session, arkime_packet
        IS_MAIN = __name__ == "__main__"
        MAIN_IS_ME = sys.modules["__main__"].__dict__ is globals()
        FILE = __file__
        VERSION = arkime.VERSION

        def later():
            import arkime_session as again  # still importable at call time
            return again
    """)
    report = load_plugins(rt, files=[p])
    assert report.ok
    g = report.modules[p].__dict__
    assert g["IS_MAIN"] and g["MAIN_IS_ME"] and g["FILE"] == str(p) and g["VERSION"] == "6.7.0"
    assert g["later"]() is rt.modules["arkime_session"]
    assert sys.modules["__main__"].__dict__ is not g  # the real __main__ is restored
    assert str(tmp_path) not in sys.path  # Arkime does not add the script dir


def test_broken_plugins_reported_with_line_and_loading_goes_on(rt, tmp_path, write_plugin):
    d = tmp_path / "p"
    write_plugin("a_syntax.py", "import arkime\ndef broken(:\n", d)
    write_plugin("b_raises.py", """\
        import arkime
        arkime.register_tcp_classifier("early", 0, b"EA", lambda *a: None)
        raise RuntimeError("load failure")
        arkime.register_tcp_classifier("never", 0, b"NV", lambda *a: None)
    """, d)
    write_plugin("c_badargs.py", """\
        import arkime

        arkime.register_port_classifier("x", 80, 0, lambda *a: None)
    """, d)
    write_plugin("d_exit.py", "import sys\nsys.exit(3)\n", d)
    write_plugin("e_good.py", """\
        import arkime
        arkime.register_tcp_classifier("good", 0, b"GO", lambda *a: None)
    """, d)
    report = load_plugins(rt, dirs=[d])
    errors = {e.path.rsplit("/", 1)[1]: e for e in report.errors}
    assert set(errors) == {"a_syntax.py", "b_raises.py", "c_badargs.py", "d_exit.py"}
    assert errors["a_syntax.py"].line == 2 and "SyntaxError" in errors["a_syntax.py"].message
    assert errors["b_raises.py"].line == 3 and "load failure" in errors["b_raises.py"].message
    assert errors["c_badargs.py"].line == 3 and "portKind" in errors["c_badargs.py"].message
    assert errors["d_exit.py"].line == 2
    assert str(errors["b_raises.py"]).endswith("b_raises.py:3: RuntimeError: load failure")
    prefixes = {m for _, _, m in rt.offload_rules().prefixes}
    assert prefixes == {b"EA", b"GO"}  # registrations before the error stay
    # files that ran count as loaded even when they failed (as in Arkime); unparsable ones do not
    assert [p.name for p in report.loaded] == [
        "b_raises.py", "c_badargs.py", "d_exit.py", "e_good.py"]


def test_callback_error_names_plugin_file_and_line(rt, write_plugin, view_cls, caplog):
    p = write_plugin("cbfail.py", """\
        import arkime

        def classify(session, mv, n, which):
            x = 1
            raise ValueError("in callback")

        arkime.register_tcp_classifier("f", 0, b"", classify)
    """)
    assert load_plugins(rt, files=[p]).ok
    rt.payload(rt.session_started(view_cls()), 0, b"hi")
    assert f"{p}:5" in caplog.text and "in callback" in caplog.text
    assert rt.errors.counts["classify:f"] == 1


def test_plugin_names_searched_in_plugin_dirs(rt, tmp_path, write_plugin):
    first, second = tmp_path / "first", tmp_path / "second"
    write_plugin("x.py", "import arkime\nWHERE = 'first'\n", first)
    write_plugin("x.py", "WHERE = 'second'\n", second)
    write_plugin("y.py", "WHERE = 'second'\n", second)
    report = load_plugins(rt, plugin_names=["y.py", "x.py", "missing.py"],
                          plugin_dirs=[first, second])
    assert [(p.parent.name, p.name) for p in report.loaded] == [("second", "y.py"),
                                                                 ("first", "x.py")]
    (err,) = report.errors
    assert err.path == "missing.py" and "not found" in err.message
