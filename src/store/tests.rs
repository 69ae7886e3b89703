use serde_json::json;

use super::*;

fn ok(_: &Lookup) -> Result<(), ApiError> {
    Ok(())
}

fn n(s: &str) -> ResourceName {
    ResourceName::parse("t", s).unwrap()
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store.redb"), "us-west-2").unwrap();
    (dir, store)
}

fn write(spec: serde_json::Value, refs: Vec<(ResourceKind, ResourceName)>) -> Write {
    Write {
        spec,
        references: refs,
        tags: vec![],
        client_token: None,
    }
}

fn mesh(store: &Store, name: &str) -> ResourceId {
    let id = ResourceId::mesh(n(name));
    store.create(&id, write(json!({}), vec![]), ok).unwrap();
    id
}

#[test]
fn create_then_describe_returns_version_one_and_arn() {
    let (_d, store) = open();
    mesh(&store, "m");
    let vn = ResourceId::top(ResourceKind::VirtualNode, n("m"), n("vn"));
    let rec = store
        .create(&vn, write(json!({"listeners": []}), vec![]), ok)
        .unwrap();
    assert_eq!(rec.row.version, 1);
    assert_eq!(
        rec.arn,
        format!(
            "arn:aws:appmesh:us-west-2:{}:mesh/m/virtualNode/vn",
            store.account()
        )
    );
    assert_eq!(store.describe(&vn).unwrap().row, rec.row);
}

#[test]
fn duplicate_name_is_a_conflict_and_changes_nothing() {
    let (_d, store) = open();
    mesh(&store, "m");
    let before = store.version();
    let err = store
        .create(&ResourceId::mesh(n("m")), write(json!({}), vec![]), ok)
        .unwrap_err();
    assert!(matches!(err, ApiError::Conflict(_)), "{err:?}");
    assert_eq!(store.version(), before);
}

#[test]
fn dangling_reference_is_refused_and_writes_nothing() {
    let (_d, store) = open();
    mesh(&store, "m");
    let vs = ResourceId::top(ResourceKind::VirtualService, n("m"), n("svc"));
    let err = store
        .create(
            &vs,
            write(json!({}), vec![(ResourceKind::VirtualNode, n("missing"))]),
            ok,
        )
        .unwrap_err();
    assert!(err.to_string().contains("VirtualNode missing"), "{err}");
    assert!(matches!(store.describe(&vs), Err(ApiError::NotFound(_))));
}

#[test]
fn referenced_node_cannot_be_deleted_until_the_referrer_goes() {
    let (_d, store) = open();
    mesh(&store, "m");
    let vn = ResourceId::top(ResourceKind::VirtualNode, n("m"), n("vn"));
    store.create(&vn, write(json!({}), vec![]), ok).unwrap();
    let vs = ResourceId::top(ResourceKind::VirtualService, n("m"), n("svc"));
    store
        .create(
            &vs,
            write(json!({}), vec![(ResourceKind::VirtualNode, n("vn"))]),
            ok,
        )
        .unwrap();
    let err = store.delete(&vn).unwrap_err();
    assert!(matches!(err, ApiError::ResourceInUse(_)));
    assert!(
        err.to_string().contains("mesh/m/virtualService/svc"),
        "{err}"
    );
    // Updating the service away from the node frees it.
    store.update(&vs, write(json!({}), vec![]), ok).unwrap();
    let deleted = store.delete(&vn).unwrap();
    assert_eq!((deleted.row.version, deleted.status), (2, Status::Deleted));
}

#[test]
fn mesh_with_children_cannot_be_deleted() {
    let (_d, store) = open();
    let m = mesh(&store, "m");
    let vr = ResourceId::top(ResourceKind::VirtualRouter, n("m"), n("vr"));
    store.create(&vr, write(json!({}), vec![]), ok).unwrap();
    let route = ResourceId::nested(ResourceKind::Route, n("m"), n("vr"), n("r"));
    store.create(&route, write(json!({}), vec![]), ok).unwrap();
    assert!(store
        .delete(&vr)
        .unwrap_err()
        .to_string()
        .contains("mesh/m/virtualRouter/vr/route/r"));
    assert!(matches!(store.delete(&m), Err(ApiError::ResourceInUse(_))));
    store.delete(&route).unwrap();
    store.delete(&vr).unwrap();
    store.delete(&m).unwrap();
}

#[test]
fn list_pages_in_name_order_and_stays_within_its_scope() {
    let (_d, store) = open();
    mesh(&store, "a");
    mesh(&store, "m");
    mesh(&store, "z");
    for i in 0..7 {
        let id = ResourceId::top(ResourceKind::VirtualNode, n("m"), n(&format!("vn{i}")));
        store.create(&id, write(json!({}), vec![]), ok).unwrap();
    }
    store
        .create(
            &ResourceId::top(ResourceKind::VirtualNode, n("z"), n("other")),
            write(json!({}), vec![]),
            ok,
        )
        .unwrap();
    let scope = ListScope::Mesh(n("m"), ResourceKind::VirtualNode);
    let mut names = vec![];
    let mut token = None;
    loop {
        let page = store.list(&scope, 3, token.as_deref()).unwrap();
        names.extend(page.items.iter().map(|r| r.id.name.to_string()));
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("vn{i}")).collect::<Vec<_>>());
    let meshes = store.list(&ListScope::Meshes, 100, None).unwrap();
    assert_eq!(meshes.items.len(), 3);
    assert!(matches!(
        store.list(&scope, 3, Some("garbage")),
        Err(ApiError::BadRequest(_))
    ));
}

#[test]
fn same_client_token_replays_and_different_request_conflicts() {
    let (_d, store) = open();
    let id = ResourceId::mesh(n("m"));
    let token = |d: &str| {
        Some(ClientToken {
            token: "t1".into(),
            request_digest: d.into(),
        })
    };
    let first = store
        .create(
            &id,
            Write {
                client_token: token("a"),
                ..write(json!({}), vec![])
            },
            ok,
        )
        .unwrap();
    let again = store
        .create(
            &id,
            Write {
                client_token: token("a"),
                ..write(json!({}), vec![])
            },
            ok,
        )
        .unwrap();
    assert_eq!(first.row.uid, again.row.uid);
    let err = store
        .create(
            &id,
            Write {
                client_token: token("b"),
                ..write(json!({}), vec![])
            },
            ok,
        )
        .unwrap_err();
    assert!(matches!(err, ApiError::Conflict(_)));
}

#[test]
fn change_feed_moves_only_on_committed_writes() {
    let (_d, store) = open();
    let rx = store.subscribe();
    let v0 = *rx.borrow();
    mesh(&store, "m");
    assert_eq!(*rx.borrow(), v0 + 1);
    let _ = store.create(&ResourceId::mesh(n("m")), write(json!({}), vec![]), ok);
    assert_eq!(*rx.borrow(), v0 + 1);
}

#[test]
fn writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let account = {
        let store = Store::open(&path, "r").unwrap();
        mesh(&store, "m");
        store.account().to_owned()
    };
    let store = Store::open(&path, "r").unwrap();
    assert_eq!(store.account(), account);
    assert!(store.describe(&ResourceId::mesh(n("m"))).is_ok());
    assert_eq!(store.version(), 1);
}

#[test]
fn tags_add_replace_remove_and_limit() {
    let (_d, store) = open();
    let id = mesh(&store, "m");
    store
        .tag(
            &id,
            vec![Tag {
                key: "a".into(),
                value: "1".into(),
            }],
        )
        .unwrap();
    store
        .tag(
            &id,
            vec![Tag {
                key: "a".into(),
                value: "2".into(),
            }],
        )
        .unwrap();
    assert_eq!(
        store.describe(&id).unwrap().row.tags,
        vec![Tag {
            key: "a".into(),
            value: "2".into()
        }]
    );
    store.untag(&id, &["a".into()]).unwrap();
    assert!(store.describe(&id).unwrap().row.tags.is_empty());
    let many = (0..51)
        .map(|i| Tag {
            key: format!("k{i}"),
            value: String::new(),
        })
        .collect();
    assert!(matches!(
        store.tag(&id, many),
        Err(ApiError::TooManyTags(_))
    ));
    assert!(store.describe(&id).unwrap().row.tags.is_empty());
}

#[test]
fn admin_users_are_listed_given_new_passwords_and_deleted() {
    let (_d, store) = open();
    assert!(store.list_admins().unwrap().is_empty(), "no table yet");
    store.create_admin("ops", "$argon2id$one").unwrap();
    store.create_admin("dev", "$argon2id$two").unwrap();
    let names: Vec<String> = store
        .list_admins()
        .unwrap()
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    assert_eq!(names, ["dev", "ops"]);
    store.set_admin_password("ops", "$argon2id$three").unwrap();
    assert_eq!(
        store.admin_password_hash("ops").unwrap().as_deref(),
        Some("$argon2id$three")
    );
    assert!(matches!(
        store.set_admin_password("nobody", "x"),
        Err(ApiError::NotFound(_))
    ));
    assert!(
        store.admin_password_hash("nobody").unwrap().is_none(),
        "not created"
    );
    store.delete_admin("dev").unwrap();
    assert!(matches!(
        store.delete_admin("dev"),
        Err(ApiError::NotFound(_))
    ));
    assert_eq!(store.list_admins().unwrap().len(), 1);
}
