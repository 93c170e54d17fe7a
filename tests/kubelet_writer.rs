//! The test helper `support::kubelet` itself, checked against the on-disk
//! facts of the kubelet's AtomicWriter: the ConfigMap volume layout,
//! both AtomicWriter step orders (whole and paused between steps), the
//! no-op resync, and the final state each editor-style writer leaves.
//! Only filesystem facts; no watcher and no proxy are involved.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::kubelet::{
    delete_and_recreate, write_in_place, write_in_place_chunked, write_like_vim, write_via_rename,
    ConfigMapDir, KubeletOrder, Step, DATA_DIR, DATA_DIR_TMP,
};

const OLD: &[u8] = b"routes:\n  - prefix: /old\n    upstream: 127.0.0.1:1\n";
const NEW: &[u8] = b"routes:\n  - prefix: /new\n    upstream: 127.0.0.1:2\n";
const ORDERS: [KubeletOrder; 2] = [KubeletOrder::Current, KubeletOrder::Pre123];

fn volume() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    (tmp, dir)
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).expect("lstat").mode() & 0o7777
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn absent(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == ErrorKind::NotFound)
}

/// Reading through a dangling symlink fails with NotFound.
fn dangles(path: &Path) -> bool {
    is_symlink(path) && matches!(fs::read(path), Err(e) if e.kind() == ErrorKind::NotFound)
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// `..YYYY_MM_DD_HH_MM_SS.<1-10 digits>`; returns the `YYYY_MM_DD` part.
fn check_ts_name(name: &str) -> String {
    let rest = name.strip_prefix("..").expect("`..` prefix");
    let (stamp, digits) = rest.split_once('.').expect("`.` before the digits");
    assert_eq!(stamp.len(), 19, "{name}");
    for (i, b) in stamp.bytes().enumerate() {
        if [4, 7, 10, 13, 16].contains(&i) {
            assert_eq!(b, b'_', "{name}");
        } else {
            assert!(b.is_ascii_digit(), "{name}");
        }
    }
    assert!((1..=10).contains(&digits.len()), "{name}");
    assert!(digits.parse::<u32>().is_ok(), "{name}");
    stamp[..10].to_owned()
}

fn utc_date_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y_%m_%d"])
        .output()
        .expect("run date");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// Everything `stat` says could reveal a write, for every entry under
/// `dir` (symlinks not followed) and `dir` itself.
type Snapshot = BTreeMap<PathBuf, (u64, i64, i64, i64, i64, u32)>;

fn snapshot(dir: &Path) -> Snapshot {
    fn walk(path: &Path, out: &mut Snapshot) {
        let m = fs::symlink_metadata(path).expect("lstat");
        out.insert(
            path.to_path_buf(),
            (
                m.ino(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.mode(),
            ),
        );
        if m.is_dir() {
            for e in fs::read_dir(path).expect("read_dir") {
                walk(&e.expect("entry").path(), out);
            }
        }
    }
    let mut out = Snapshot::new();
    walk(dir, &mut out);
    out
}

#[test]
fn create_lays_out_the_volume_like_the_kubelet() {
    let (_tmp, dir) = volume();
    let before = utc_date_now();
    let cm = ConfigMapDir::create(&dir, &[("routes.yaml", OLD), ("extra.yaml", b"x: 1\n")])
        .expect("create");
    let after = utc_date_now();

    assert_eq!(cm.path(), dir);
    assert_eq!(fs::read(cm.file("routes.yaml")).unwrap(), OLD);
    assert_eq!(fs::read(cm.file("extra.yaml")).unwrap(), b"x: 1\n");

    // `..data` is a relative symlink to a `..`-prefixed sibling dir.
    let data = dir.join(DATA_DIR);
    assert!(is_symlink(&data));
    let target = fs::read_link(&data).unwrap();
    let target = target.to_str().unwrap();
    assert!(
        target.starts_with("..") && !target.contains('/'),
        "{target}"
    );
    let date = check_ts_name(target);
    assert!(
        date == before || date == after,
        "{target} vs {before}/{after}"
    );
    assert_eq!(cm.data_dir().unwrap(), dir.join(target));
    assert_eq!(cm.timestamp_dirs().unwrap(), vec![target.to_owned()]);

    // Each key is a relative symlink into `..data`, never into the
    // timestamped dir directly.
    for key in ["routes.yaml", "extra.yaml"] {
        assert!(is_symlink(&cm.file(key)));
        assert_eq!(
            fs::read_link(cm.file(key)).unwrap(),
            Path::new(DATA_DIR).join(key)
        );
        assert_eq!(mode(&dir.join(target).join(key)), 0o644);
    }

    assert_eq!(mode(&dir), 0o777);
    assert_eq!(mode(&dir.join(target)), 0o755);
    assert!(absent(&dir.join(DATA_DIR_TMP)));
    assert_eq!(
        names(&dir),
        BTreeSet::from([
            target.to_owned(),
            DATA_DIR.to_owned(),
            "routes.yaml".to_owned(),
            "extra.yaml".to_owned(),
        ])
    );

    // A second create on the same volume is refused.
    let err = ConfigMapDir::create(&dir, &[("routes.yaml", NEW)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(fs::read(cm.file("routes.yaml")).unwrap(), OLD);
}

#[test]
fn update_in_each_order_swaps_content_and_cleans_up() {
    for order in ORDERS {
        let (_tmp, dir) = volume();
        let mut cm =
            ConfigMapDir::create(&dir, &[("routes.yaml", OLD), ("gone.yaml", b"g\n")]).unwrap();
        let old_dir = cm.data_dir().unwrap();
        let routes_link_ino = fs::symlink_metadata(cm.file("routes.yaml")).unwrap().ino();

        let changed = cm
            .update(&[("routes.yaml", NEW), ("added.yaml", b"a\n")], order)
            .unwrap();
        assert!(changed, "{order:?}");

        assert_eq!(fs::read(cm.file("routes.yaml")).unwrap(), NEW, "{order:?}");
        // routes.yaml itself is never written on an update: same symlink.
        assert_eq!(
            fs::symlink_metadata(cm.file("routes.yaml")).unwrap().ino(),
            routes_link_ino,
            "{order:?}"
        );
        assert!(absent(&old_dir), "{order:?}: old dir still there");
        let ts = cm.timestamp_dirs().unwrap();
        assert_eq!(ts.len(), 1, "{order:?}: {ts:?}");
        assert_eq!(cm.data_dir().unwrap(), dir.join(&ts[0]), "{order:?}");
        assert_ne!(cm.data_dir().unwrap(), old_dir, "{order:?}");
        check_ts_name(&ts[0]);
        assert_eq!(mode(&dir.join(&ts[0])), 0o755, "{order:?}");
        assert_eq!(mode(&dir.join(&ts[0]).join("routes.yaml")), 0o644);

        assert!(absent(&cm.file("gone.yaml")), "{order:?}: removed key");
        assert!(is_symlink(&cm.file("added.yaml")), "{order:?}: new key");
        assert_eq!(
            fs::read_link(cm.file("added.yaml")).unwrap(),
            Path::new(DATA_DIR).join("added.yaml")
        );
        assert_eq!(fs::read(cm.file("added.yaml")).unwrap(), b"a\n");
        assert!(absent(&dir.join(DATA_DIR_TMP)), "{order:?}");
        assert_eq!(
            names(&dir),
            BTreeSet::from([
                ts[0].clone(),
                DATA_DIR.to_owned(),
                "routes.yaml".to_owned(),
                "added.yaml".to_owned(),
            ]),
            "{order:?}"
        );
    }
}

#[test]
fn equal_payload_is_a_no_op() {
    let (_tmp, dir) = volume();
    let mut cm = ConfigMapDir::create(&dir, &[("routes.yaml", OLD), ("b.yaml", b"b\n")]).unwrap();
    // Make any rewrite visible in mtime/ctime even on coarse clocks.
    std::thread::sleep(Duration::from_millis(20));
    let before = snapshot(&dir);
    for order in ORDERS {
        // Same payload, keys in another order: still equal.
        assert!(!cm
            .update(&[("b.yaml", b"b\n"), ("routes.yaml", OLD)], order)
            .unwrap());
        assert!(cm
            .begin_update(&[("routes.yaml", OLD), ("b.yaml", b"b\n")], order)
            .unwrap()
            .is_none());
    }
    assert_eq!(snapshot(&dir), before);

    // A dropped key is a change even if every remaining file is equal.
    assert!(cm
        .update(&[("routes.yaml", OLD)], KubeletOrder::Current)
        .unwrap());
    assert!(absent(&cm.file("b.yaml")));
}

#[test]
fn timestamp_dirs_are_unique_within_one_second() {
    let (_tmp, dir) = volume();
    let mut cm = ConfigMapDir::create(&dir, &[("routes.yaml", b"0")]).unwrap();
    let mut seen = BTreeSet::from([cm.timestamp_dirs().unwrap()[0].clone()]);
    let start = Instant::now();
    for i in 1..=8 {
        let body = i.to_string();
        let order = ORDERS[i % 2];
        assert!(cm
            .update(&[("routes.yaml", body.as_bytes())], order)
            .unwrap());
        let ts = cm.timestamp_dirs().unwrap();
        assert_eq!(ts.len(), 1, "{ts:?}");
        assert!(seen.insert(ts[0].clone()), "reused name {}", ts[0]);
        assert_eq!(fs::read(cm.file("routes.yaml")).unwrap(), body.as_bytes());
    }
    // Nine writes in well under a second share (almost always) one stamp;
    // the names stayed unique anyway.
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(seen.len(), 9);
}

#[test]
fn steps_pause_before_and_after_the_switch() {
    let (_tmp, dir) = volume();
    let mut cm =
        ConfigMapDir::create(&dir, &[("routes.yaml", OLD), ("gone.yaml", b"g\n")]).unwrap();
    let routes = cm.file("routes.yaml");
    let mut up = cm
        .begin_update(
            &[("routes.yaml", NEW), ("added.yaml", b"a\n")],
            KubeletOrder::Current,
        )
        .unwrap()
        .expect("a change");
    assert_eq!(up.remaining(), KubeletOrder::Current.steps());
    assert_eq!(up.next_step(), Some(Step::WriteNewDir));
    let old_dir = up.old_dir().expect("old dir");
    assert!(up.new_dir().is_none());

    // Paused after the new dir is written: nothing user-visible changed.
    up.run_through(Step::WriteNewDir).unwrap();
    let new_dir = up.new_dir().expect("new dir");
    assert_eq!(fs::read(new_dir.join("routes.yaml")).unwrap(), NEW);
    assert_eq!(mode(&new_dir), 0o755);
    assert_eq!(fs::read(&routes).unwrap(), OLD);
    assert_eq!(cm.data_dir().unwrap(), old_dir);
    assert_eq!(cm.timestamp_dirs().unwrap().len(), 2);

    // Paused with `..data_tmp` built but not yet renamed: still old.
    assert_eq!(up.step().unwrap(), Some(Step::LinkDataTmp));
    assert!(is_symlink(&dir.join(DATA_DIR_TMP)));
    assert_eq!(fs::read(&routes).unwrap(), OLD);

    // Paused right after the rename: routes.yaml reads the new content
    // while the old dir still exists; the removed key's symlink dangles
    // and the new key has no symlink yet.
    up.run_through(Step::SwitchData).unwrap();
    assert_eq!(fs::read(&routes).unwrap(), NEW);
    assert!(absent(&dir.join(DATA_DIR_TMP)));
    assert_eq!(cm.data_dir().unwrap(), new_dir);
    assert!(old_dir.is_dir());
    assert!(dangles(&cm.file("gone.yaml")));
    assert!(absent(&cm.file("added.yaml")));
    assert_eq!(
        up.remaining(),
        &[
            Step::LinkNewKeys,
            Step::UnlinkRemovedKeys,
            Step::RemoveOldDir
        ]
    );

    // A step that already ran cannot be run through again.
    let err = up.run_through(Step::WriteNewDir).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    up.run_through(Step::UnlinkRemovedKeys).unwrap();
    assert_eq!(fs::read(cm.file("added.yaml")).unwrap(), b"a\n");
    assert!(absent(&cm.file("gone.yaml")));
    assert!(old_dir.is_dir());

    up.step().unwrap();
    assert!(absent(&old_dir));
    assert_eq!(up.step().unwrap(), None);
    up.finish().unwrap();
    assert_eq!(cm.timestamp_dirs().unwrap().len(), 1);
}

#[test]
fn pre123_links_new_keys_before_the_switch() {
    let (_tmp, dir) = volume();
    let mut cm = ConfigMapDir::create(&dir, &[("routes.yaml", OLD)]).unwrap();
    let mut up = cm
        .begin_update(
            &[("routes.yaml", NEW), ("added.yaml", b"a\n")],
            KubeletOrder::Pre123,
        )
        .unwrap()
        .expect("a change");
    assert_eq!(up.remaining(), KubeletOrder::Pre123.steps());

    // The new key's symlink exists before `..data` points at a dir that
    // has the file: it dangles, and routes.yaml is still old.
    up.run_through(Step::LinkNewKeys).unwrap();
    assert!(dangles(&cm.file("added.yaml")));
    assert!(absent(&dir.join(DATA_DIR_TMP)));
    assert_eq!(fs::read(cm.file("routes.yaml")).unwrap(), OLD);

    up.run_through(Step::SwitchData).unwrap();
    assert_eq!(fs::read(cm.file("routes.yaml")).unwrap(), NEW);
    assert_eq!(fs::read(cm.file("added.yaml")).unwrap(), b"a\n");
    assert_eq!(cm.timestamp_dirs().unwrap().len(), 2);

    up.finish().unwrap();
    assert_eq!(cm.timestamp_dirs().unwrap().len(), 1);
}

#[test]
fn bad_keys_are_refused_before_touching_anything() {
    let (_tmp, dir) = volume();
    let mut cm = ConfigMapDir::create(&dir, &[("routes.yaml", OLD)]).unwrap();
    let before = snapshot(&dir);
    for files in [
        &[("..data", NEW)][..],
        &[("a/b", NEW)][..],
        &[("", NEW)][..],
        &[("x", NEW), ("x", OLD)][..],
    ] {
        let err = cm.update(files, KubeletOrder::Current).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{files:?}");
    }
    assert_eq!(snapshot(&dir), before);
}

/// A plain config file with a non-default mode, to see that editors keep it.
fn plain_file() -> (tempfile::TempDir, PathBuf) {
    let (tmp, dir) = volume();
    fs::create_dir(&dir).unwrap();
    let path = dir.join("routes.yaml");
    fs::write(&path, OLD).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    (tmp, path)
}

fn ino(path: &Path) -> u64 {
    fs::symlink_metadata(path).expect("lstat").ino()
}

#[test]
fn write_via_rename_replaces_the_inode() {
    let (_tmp, path) = plain_file();
    let old_ino = ino(&path);
    write_via_rename(&path, NEW).unwrap();
    assert_eq!(fs::read(&path).unwrap(), NEW);
    // Both inodes existed at once, so the number cannot have been reused.
    assert_ne!(ino(&path), old_ino);
    assert_eq!(mode(&path), 0o640);
    assert_eq!(
        names(path.parent().unwrap()),
        BTreeSet::from(["routes.yaml".to_owned()])
    );
}

#[test]
fn write_like_vim_leaves_no_backup_or_probe() {
    let (_tmp, path) = plain_file();
    let dir = path.parent().unwrap().to_path_buf();
    let old_ino = ino(&path);
    write_like_vim(&path, NEW).unwrap();
    assert_eq!(fs::read(&path).unwrap(), NEW);
    assert_ne!(ino(&path), old_ino, "vim's rename-backup gives a new inode");
    assert_eq!(mode(&path), 0o640);
    assert_eq!(names(&dir), BTreeSet::from(["routes.yaml".to_owned()]));

    // A `4913` that is not vim's is left alone; the probe moves to 5036.
    fs::write(dir.join("4913"), b"mine").unwrap();
    write_like_vim(&path, OLD).unwrap();
    assert_eq!(fs::read(&path).unwrap(), OLD);
    assert_eq!(fs::read(dir.join("4913")).unwrap(), b"mine");
    assert_eq!(
        names(&dir),
        BTreeSet::from(["routes.yaml".to_owned(), "4913".to_owned()])
    );

    // On a ConfigMap symlink vim would write in place; the helper refuses
    // rather than pretend.
    let (_tmp2, cm_dir) = volume();
    let cm = ConfigMapDir::create(&cm_dir, &[("routes.yaml", OLD)]).unwrap();
    let err = write_like_vim(&cm.file("routes.yaml"), NEW).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(fs::read(cm.file("routes.yaml")).unwrap(), OLD);
}

#[test]
fn write_in_place_keeps_the_inode() {
    let (_tmp, path) = plain_file();
    let old_ino = ino(&path);
    write_in_place(&path, NEW).unwrap();
    assert_eq!(fs::read(&path).unwrap(), NEW);
    assert_eq!(ino(&path), old_ino);
    assert_eq!(mode(&path), 0o640);
    assert_eq!(
        names(path.parent().unwrap()),
        BTreeSet::from(["routes.yaml".to_owned()])
    );

    // Through a ConfigMap symlink it writes the live file, not the link.
    let (_tmp2, cm_dir) = volume();
    let cm = ConfigMapDir::create(&cm_dir, &[("routes.yaml", OLD)]).unwrap();
    let real = cm.data_dir().unwrap().join("routes.yaml");
    let real_ino = ino(&real);
    write_in_place(&cm.file("routes.yaml"), NEW).unwrap();
    assert!(is_symlink(&cm.file("routes.yaml")));
    assert_eq!(fs::read(&real).unwrap(), NEW);
    assert_eq!(ino(&real), real_ino);
}

#[tokio::test(flavor = "multi_thread")]
async fn write_in_place_chunked_shows_partial_files() {
    let (_tmp, path) = plain_file();
    let old_ino = ino(&path);
    let content: Vec<u8> = NEW.repeat(2);
    let writer = {
        let (path, content) = (path.clone(), content.clone());
        tokio::spawn(async move {
            write_in_place_chunked(&path, &content, 16, Duration::from_millis(40)).await
        })
    };

    // Every read is a prefix of the new content (or, before the truncate,
    // the old content); at least one is empty and one half-written.
    let mut lengths = BTreeSet::new();
    while !writer.is_finished() {
        let seen = fs::read(&path).unwrap();
        if seen != OLD {
            assert!(content.starts_with(&seen), "not a prefix: {seen:?}");
            lengths.insert(seen.len());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.await.unwrap().unwrap();

    assert_eq!(fs::read(&path).unwrap(), content);
    assert_eq!(ino(&path), old_ino);
    assert!(
        lengths.contains(&0),
        "never saw the empty file: {lengths:?}"
    );
    assert!(
        lengths.iter().any(|&n| n > 0 && n < content.len()),
        "never saw a partial file: {lengths:?}"
    );
    assert_eq!(
        names(path.parent().unwrap()),
        BTreeSet::from(["routes.yaml".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_and_recreate_leaves_a_gap() {
    let (_tmp, path) = plain_file();
    let writer = {
        let path = path.clone();
        tokio::spawn(
            async move { delete_and_recreate(&path, NEW, Duration::from_millis(200)).await },
        )
    };
    let mut saw_gap = false;
    while !writer.is_finished() {
        saw_gap |= absent(&path);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.await.unwrap().unwrap();
    assert!(saw_gap, "the file was never absent");
    assert_eq!(fs::read(&path).unwrap(), NEW);
    assert!(!is_symlink(&path));
    assert_eq!(
        names(path.parent().unwrap()),
        BTreeSet::from(["routes.yaml".to_owned()])
    );
}
