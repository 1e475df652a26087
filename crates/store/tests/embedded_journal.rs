//! The embedded store's marker journal across a real crash: a writer process (32 concurrent
//! writers, journaled group commit) is SIGKILLed; its journal then holds groups that redb has
//! not made durable, and reopening applies them: every acknowledged marker is back, the journal
//! is emptied, and a torn record at the end (a crash in the middle of an append) is ignored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, Write};

use hlsmark_store::{StreamName, open};
use uuid::Uuid;

fn journal_of(path: &std::path::Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".journal");
    p.into()
}

#[tokio::test]
async fn journaled_markers_survive_a_killed_writer_and_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .arg(&path)
        .arg("32")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = BTreeSet::new();
    // Until the journal holds records (groups after the last checkpoint) and enough is acked.
    let journal = journal_of(&path);
    while acked.len() < 2_000 || std::fs::metadata(&journal).map_or(0, |m| m.len()) < 4096 {
        let n: u64 = lines
            .next()
            .expect("writer exited early")
            .unwrap()
            .parse()
            .unwrap();
        assert!(acked.insert(n), "marker {n} acknowledged twice");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for line in lines {
        match line.map(|l| l.parse::<u64>()) {
            Ok(Ok(n)) => {
                acked.insert(n);
            }
            _ => break,
        }
    }
    let before = std::fs::metadata(&journal).unwrap().len();
    assert!(before > 0, "the journal held the newest groups");
    // A torn append: a header promising more bytes than follow.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9, b'{'])
        .unwrap();
    drop(f);

    let store = open(&path.to_string_lossy(), "t").await.unwrap();
    let live = StreamName::live();
    for n in &acked {
        let m = store
            .get_marker(&live, Uuid::from_u128(u128::from(*n)))
            .await
            .unwrap();
        assert!(m.is_some(), "acknowledged marker {n} lost");
    }
    let count = store.count_markers(&live).await.unwrap();
    let acked_n = acked.len() as u64;
    assert!(
        count >= acked_n && count <= acked_n + 32,
        "{count} markers, {acked_n} acknowledged (at most one unacknowledged per writer)"
    );
    assert_eq!(
        std::fs::metadata(&journal).unwrap().len(),
        0,
        "the journal is emptied once applied"
    );
    // And the store goes on writing (through the journal again).
    let mut m = store
        .get_marker(&live, Uuid::from_u128(u128::from(*acked.first().unwrap())))
        .await
        .unwrap()
        .unwrap();
    m.id = Uuid::from_u128(u128::MAX - 1);
    store.insert_marker(&m).await.unwrap();
    assert_eq!(store.count_markers(&live).await.unwrap(), count + 1);
}
