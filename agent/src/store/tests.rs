use super::*;

fn bundle(n: usize) -> Bundle {
    Bundle::new(vec![
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{n}")}}),
    ])
}

fn entry(state: State) -> HistoryEntry {
    HistoryEntry {
        at: now(),
        state,
        revision: None,
        message: None,
    }
}

fn apply(store: &Store, rev: &str, b: &Bundle) {
    store
        .update("web", entry(State::Ready), Some((rev, b)), 3, |r| {
            r.status.applied = Some(rev.into());
            r.status.last_good = Some(rev.into());
        })
        .unwrap();
}

#[test]
fn survives_reopen_and_keeps_last_n_bundles() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..5 {
            apply(&store, &format!("rev{i}"), &bundle(i));
        }
    }
    let store = Store::open(dir.path()).unwrap();
    let (rev, b) = store.last_good("web").unwrap().unwrap();
    assert_eq!(rev, "rev4");
    assert_eq!(b, bundle(4));
    assert_eq!(
        store.record("web").unwrap().revisions,
        ["rev4", "rev3", "rev2"]
    );
    assert!(store.bundle("web", "rev1").unwrap().is_none(), "evicted");
    assert!(store.bundle("web", "rev2").unwrap().is_some());
}

#[test]
fn last_good_is_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    apply(&store, "good", &bundle(0));
    // Later revisions applied but not good (e.g. failed health) must not push out the last good bundle.
    for i in 1..6 {
        store
            .update(
                "web",
                entry(State::Failed),
                Some((&format!("bad{i}"), &bundle(i))),
                2,
                |r| {
                    r.status.applied = Some(format!("bad{i}"));
                },
            )
            .unwrap();
    }
    assert_eq!(store.last_good("web").unwrap().unwrap().0, "good");
    assert_eq!(
        store.record("web").unwrap().revisions,
        ["bad5", "bad4", "good"]
    );
}

#[test]
fn history_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for _ in 0..(HISTORY_LEN + 20) {
        store
            .update("web", entry(State::Ready), None, 3, |_| {})
            .unwrap();
    }
    assert_eq!(store.history("web").unwrap().len() as u64, HISTORY_LEN);
    assert!(store.history("other").unwrap().is_empty());
}

#[test]
fn remove_source_forgets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    apply(&store, "r1", &bundle(1));
    apply(&store, "r1", &bundle(1));
    store
        .update(
            "webx",
            entry(State::Ready),
            Some(("r9", &bundle(9))),
            3,
            |_| {},
        )
        .unwrap();
    store.remove_source("web").unwrap();
    assert!(store.sources().unwrap().iter().all(|(n, _)| n != "web"));
    assert!(store.bundle("web", "r1").unwrap().is_none());
    assert!(store.history("web").unwrap().is_empty());
    assert!(
        store.bundle("webx", "r9").unwrap().is_some(),
        "a source sharing the prefix is untouched"
    );
}
