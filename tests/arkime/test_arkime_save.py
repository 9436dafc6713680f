"""pre_save/save hooks, final flag, incref/decref deferral, mid-saves."""
import gc
import weakref


def test_hooks_run_pre_save_then_save_with_final(rt, ark, sess, start):
    order = []

    def pre(session, final):
        order.append(("pre", final))
        sess.add_tag(session, "pre")

    def save(session, final):
        order.append(("save", final))
        sess.add_tag(session, "save")
    ark.register_save(save)
    ark.register_pre_save(pre)
    record = rt.session_ended(start())
    assert order == [("pre", 1), ("save", 1)]
    assert record["tags"] == ["pre", "save"] and record["tagsCnt"] == 2
    assert rt.active_sessions() == 0


def test_incref_defers_final_save_until_decref(rt, ark, sess, start):
    held = []
    order = []

    def pre(session, final):
        order.append("pre")
        sess.incref(session)
        held.append(session)

    def save(session, final):
        order.append("save")
        sess.add_string(session, "user", "alice")
    ark.register_pre_save(pre)
    ark.register_save(save)
    h = start()
    assert rt.session_ended(h) is None
    assert order == ["pre"] and rt.drain_deferred() == []
    assert rt.session_ended(h) is None  # a second end while deferred is a no-op
    sess.incref(held[0])
    sess.decref(held[0])
    assert rt.drain_deferred() == []  # count is 1 again, still deferred
    sess.decref(held[0])
    (record,) = rt.drain_deferred()
    assert order == ["pre", "save"] and record["user"] == ["alice"]
    assert rt.drain_deferred() == [] and rt.active_sessions() == 0


def test_incref_and_decref_inside_pre_save_do_not_defer(rt, ark, sess, start):
    def pre(session, final):
        sess.incref(session)
        sess.decref(session)
    ark.register_pre_save(pre)
    assert rt.session_ended(start()) is not None


def test_extra_decref_is_ignored(rt, sess, start, caplog):
    h = start()
    sess.decref(h)
    assert "decref without incref" in caplog.text
    assert rt.session_ended(h) is not None


def test_drain_force_saves_sessions_still_held(rt, ark, sess, start):
    ark.register_pre_save(lambda s, f: sess.incref(s))
    h = start()
    assert rt.session_ended(h) is None
    (record,) = rt.drain_deferred(force=True)
    assert record["source"]["ip"] == "10.0.0.1" and rt.active_sessions() == 0


def test_mid_save_keeps_linked_fields_and_session(rt, ark, sess, start):
    finals = []
    ark.register_save(lambda s, f: finals.append(f))
    ark.field_define("keep.x", "kind:termfield;db:keep.x")
    ark.field_define("drop.x", "kind:termfield;db:drop.x;nolinked:true")
    h = start()
    sess.add_string(h, "keep.x", "k")
    sess.add_string(h, "drop.x", "d")
    sess.add_string(h, "host.http", "h")  # built-in parser fields are not linked
    mid = rt.session_ended(h, final=False)
    assert mid["keep"] == {"x": ["k"]} and mid["drop"] == {"x": ["d"]}
    assert mid["http"]["host"] == ["h"]
    assert sess.get(h, "keep.x") == ["k"] and sess.get(h, "drop.x") is None
    assert sess.get(h, "host.http") is None
    final = rt.session_ended(h)
    assert "drop" not in final and final["keep"] == {"x": ["k"]}
    assert finals == [0, 1]


def test_save_hook_exception_is_counted_and_save_goes_on(rt, ark, start):
    def broken(session, final):
        raise KeyError("oops")
    ark.register_pre_save(broken)
    record = rt.session_ended(start())
    assert record is not None and rt.errors.counts["pre_save:broken"] == 1


def test_session_free_releases_parsers_and_attrs(rt, ark, sess, start):
    class Big:
        pass
    refs = []

    def classify(session, mv, n, which):
        obj = Big()
        refs.append(weakref.ref(obj))

        def parser(s, m, n, w):
            _ = obj
            return 0
        refs.append(weakref.ref(parser))
        sess.register_parser(session, parser)
        sess.set_attr(session, "obj", obj)
    ark.register_tcp_classifier("c", 0, b"", classify)
    h = start()
    rt.payload(h, 0, b"data")
    rt.session_ended(h)
    gc.collect()
    assert refs and all(r() is None for r in refs)
