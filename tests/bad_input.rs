//! Bad input, unusable journals and exit codes (SPEC §3, §4; issue #13), with the
//! real binary against an in-process emulator whose ground truth counts requests.
//!
//! - `bad_input_corpus`: every file in tests/data/bad/ (plus cases that cannot be
//!   committed: a 1 MB line, a directory, a FIFO, an unreadable file, stdin, ...):
//!   exit 2, a message naming the file and line and the problem, 0 requests.
//!   Files named `ok_*` are valid by SPEC §4 (BOM, CRLF, exact duplicates): those
//!   are asserted to be accepted and parsed, not rejected.
//! - `unusable_journal_exits_2_for_every_command`: newer schema, truncated, not a
//!   database, a directory, a device, a read-only directory, a full disk.
//! - `exit_code_table`: command × situation → code for every subcommand.
//!
//! One emulator per test function, reused across its cases; the suite runs in seconds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use fleetcrypt::emulator::{Instance, World};

/// A bad file: (name in tests/data/bad/, line the message names (0: the file as a
/// whole), a substring of the problem).
const BAD: &[(&str, u64, &str)] = &[
    ("binary_gzip.bin", 1, "did not contain valid UTF-8"),
    ("binary_png.bin", 1, "did not contain valid UTF-8"),
    ("blank_lines_only.txt", 1, "no instances in the input"),
    (
        "bom_bad_id.csv",
        3,
        "\"cdb-XYZ\" is not a TencentDB for MySQL instance id",
    ),
    ("comments_only.txt", 1, "no instances in the input"),
    (
        "conflicting_duplicate_key.csv",
        3,
        "duplicate InstanceId cdb-abcd1234 conflicts with line 2",
    ),
    (
        "conflicting_duplicate_list.txt",
        2,
        "duplicate InstanceId cdb-abcd1234 conflicts with line 1",
    ),
    (
        "conflicting_duplicate_region.csv",
        4,
        "duplicate InstanceId cdb-abcd1234 conflicts with line 2",
    ),
    (
        "crlf_bad_id.csv",
        3,
        "\"cdb-XYZ\" is not a TencentDB for MySQL instance id",
    ),
    ("empty.csv", 1, "no instances in the input"),
    (
        "header_misspelled.csv",
        1,
        "looks like a CSV header but has no InstanceId column",
    ),
    (
        "header_no_instanceid.csv",
        1,
        "looks like a CSV header but has no InstanceId column",
    ),
    ("header_only.csv", 1, "no instances in the input"),
    ("header_only_crlf.csv", 1, "no instances in the input"),
    ("id_empty.csv", 3, "InstanceId is empty"),
    (
        "id_inner_space.csv",
        2,
        "\"cdb-abcd 1234\" is not a TencentDB for MySQL instance id",
    ),
    (
        "id_punctuation.csv",
        2,
        "\"cdb-abcd-234\" is not a TencentDB for MySQL instance id",
    ),
    (
        "id_read_only.csv",
        2,
        "\"cdbro-abcd1234\" is a read-only instance",
    ),
    (
        "id_too_long.csv",
        2,
        "\"cdb-abcd12345\" is not a TencentDB for MySQL instance id",
    ),
    (
        "id_too_short.csv",
        2,
        "\"cdb-abc123\" is not a TencentDB for MySQL instance id",
    ),
    (
        "id_uppercase.csv",
        3,
        "\"cdb-ABCD1234\" is not a TencentDB for MySQL instance id",
    ),
    (
        "id_wrong_prefix.csv",
        2,
        "\"mysql-abcd1234\" is not a TencentDB for MySQL instance id",
    ),
    ("keyid_column_only.csv", 2, "is given without a KeyRegion"),
    (
        "keyid_with_space.csv",
        2,
        "KeyId \"key with space\" is not a key id",
    ),
    (
        "keyid_without_keyregion.csv",
        3,
        "cdb-efgh5678: KeyId 3f2a9c1e-0000-4000-8000-000000000001 is given without a KeyRegion",
    ),
    (
        "keyregion_without_keyid.csv",
        2,
        "KeyRegion is given without a KeyId",
    ),
    ("latin1.csv", 3, "invalid utf-8"),
    ("latin1_label.csv", 2, "invalid utf-8"),
    (
        "list_bad_id.txt",
        4,
        "\"cdb_efgh5678\" is not a TencentDB for MySQL instance id",
    ),
    (
        "list_extra_word.txt",
        2,
        "unexpected \"orders\" after the id and region",
    ),
    ("list_no_region.txt", 1, "cdb-abcd1234: no region"),
    ("list_unknown_region.txt", 1, "unknown region \"guangzhou\""),
    (
        "many_problems.csv",
        3,
        "\"cdb-BAD\" is not a TencentDB for MySQL instance id",
    ),
    ("no_region.csv", 2, "cdb-abcd1234: no region"),
    (
        "nul_in_id.csv",
        3,
        "\"cdb-efgh\\05678\" is not a TencentDB for MySQL instance id",
    ),
    (
        "nul_only.bin",
        1,
        "is not a TencentDB for MySQL instance id",
    ),
    (
        "quote_in_field.csv",
        3,
        "\"cdb-ef\\\"gh5678\" is not a TencentDB for MySQL instance id",
    ),
    (
        "semicolon_separated.csv",
        1,
        "looks like a CSV header but has no InstanceId column",
    ),
    (
        "too_few_fields.csv",
        3,
        "expected 3 fields as in the header, found 2",
    ),
    (
        "too_many_fields.csv",
        3,
        "expected 2 fields as in the header, found 3",
    ),
    (
        "unknown_keyregion.csv",
        2,
        "unknown KeyRegion \"ap-atlantis\"",
    ),
    ("unknown_region.csv", 2, "unknown region \"ap-mars\""),
    (
        "unterminated_quote.csv",
        3,
        "expected 2 fields as in the header, found 1",
    ),
    ("utf16be_bom.csv", 1, "the file is UTF-16"),
    ("utf16le_bom.csv", 1, "the file is UTF-16"),
];

/// Every other problem of `many_problems.csv`: all are reported at once.
const MANY_PROBLEMS_TOO: &[&str] = &[
    "many_problems.csv:4: cdb-efgh5678: unknown region \"ap-mars\"",
    "many_problems.csv:5: cdb-ijkl9012: KeyId key-1 is given without a KeyRegion",
    "many_problems.csv:6: duplicate InstanceId cdb-abcd1234 conflicts with line 2",
];

/// Valid input (SPEC §4: UTF-8 with or without BOM, LF or CRLF, any column case and
/// order; exact duplicates are merged): not exit 2 but accepted, both instances parsed.
const ACCEPTED: &[&str] = &[
    "ok_bom.csv",
    "ok_bom_crlf_any_case.csv",
    "ok_crlf.csv",
    "ok_exact_duplicate.csv",
    "ok_list_bom_crlf.txt",
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad")
}

/// Both instances every valid corpus file names, unencrypted, in ap-guangzhou.
fn world() -> World {
    let mut world = World::default();
    for id in ["cdb-abcd1234", "cdb-efgh5678"] {
        world.add_instance(Instance::new(id, "ap-guangzhou"));
    }
    world
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Runs `run --instances input` with a fresh journal and asserts it was rejected as
/// bad input: exit 2, `file[:line]: problem` in the message, no request, no journal.
fn assert_rejected(emu: &EmulatorThread, input: &str, shown: &str, line: u64, says: &str) {
    let env = Env::new(&emu.url);
    let before = emu.truth().requests_total;
    let mut c = env.cmd(SECRET_KEY);
    c.args(["run", "--instances", input]).args(FAST);
    let o = output(c);
    let t = text(&o);
    assert_eq!(code(&o), 2, "{shown}: {t}");
    let place = if line == 0 {
        format!("{shown}: ")
    } else {
        format!("{shown}:{line}: ")
    };
    let first = t
        .lines()
        .find(|l| l.trim_start().starts_with(&place))
        .unwrap_or_else(|| panic!("{shown}: no line starting {place:?} in:\n{t}"));
    assert!(
        first.contains(says),
        "{shown}: expected {says:?} in {first:?}"
    );
    assert!(t.contains("nothing was sent"), "{shown}: {t}");
    assert_eq!(
        emu.truth().requests_total,
        before,
        "{shown}: bad input sent requests"
    );
    assert!(
        !env.journal().exists(),
        "{shown}: bad input must not create the journal"
    );
}

#[test]
fn bad_input_corpus() {
    let emu = EmulatorThread::start(fast_config(50), world());
    let dir = corpus();

    // The table and the directory agree: no case without an expectation and back.
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = BAD
        .iter()
        .map(|c| c.0)
        .chain(ACCEPTED.iter().copied())
        .map(String::from)
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed, "tests/data/bad/ and the tables differ");

    let mut cases = 0;
    for &(name, line, says) in BAD {
        let path = dir.join(name);
        let p = path.to_str().unwrap();
        assert_rejected(&emu, p, p, line, says);
        cases += 1;
    }
    // All the problems of a file at once, in line order.
    {
        let env = Env::new(&emu.url);
        let mut c = env.cmd(SECRET_KEY);
        c.args(["plan", "--instances"])
            .arg(dir.join("many_problems.csv"));
        let o = output(c);
        let t = text(&o);
        assert_eq!(code(&o), 2, "{t}");
        assert!(t.contains("4 problems in the input"), "{t}");
        for p in MANY_PROBLEMS_TOO {
            assert!(t.contains(p), "{p}: {t}");
        }
    }
    assert_eq!(emu.truth().requests_total, 0, "bad input sent requests");

    // Built here, not committed: a 1 MB line, a directory, a missing file, a dangling
    // symlink, a symlink loop, a path through a file, an unreadable file, a FIFO, stdin.
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let big = s.join("one_mb_line.csv");
    std::fs::write(
        &big,
        format!(
            "InstanceId,Region,Name\ncdb-abcd1234,ap-guangzhou,{}\ncdb-efgh5678,ap-mars,x\n",
            "n".repeat(1 << 20)
        ),
    )
    .unwrap();
    let d = s.join("a_directory.csv");
    std::fs::create_dir(&d).unwrap();
    let dangling = s.join("dangling.csv");
    std::os::unix::fs::symlink(s.join("gone.csv"), &dangling).unwrap();
    let looped = s.join("loop.csv");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let through = big.join("x.csv");
    let runtime: Vec<(PathBuf, u64, &str)> = vec![
        (big, 3, "cdb-efgh5678: unknown region \"ap-mars\""),
        (d, 0, "Is a directory"),
        (s.join("missing.csv"), 0, "No such file or directory"),
        (dangling, 0, "No such file or directory"),
        (looped, 0, "symbolic links"),
        (through, 0, "Not a directory"),
    ];
    for (path, line, says) in &runtime {
        let p = path.to_str().unwrap();
        assert_rejected(&emu, p, p, *line, says);
        cases += 1;
    }

    // An unreadable file. chmod 000 does not stop root (the tests run as root), so
    // then the file is one that no one can read: /proc/self/mem opens, but reading
    // its offset 0 (an unmapped address) fails with EIO.
    let locked = s.join("unreadable.csv");
    std::fs::write(&locked, "cdb-abcd1234 ap-guangzhou\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    if std::fs::read(&locked).is_err() {
        let p = locked.to_str().unwrap();
        assert_rejected(&emu, p, p, 0, "Permission denied");
    } else {
        assert_rejected(
            &emu,
            "/proc/self/mem",
            "/proc/self/mem",
            0,
            "Input/output error",
        );
    }
    cases += 1;

    // A FIFO: the input is streamed from it (and spooled for the second pass).
    let fifo = s.join("fifo.csv");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let writer_path = fifo.clone();
    // Detached: it blocks in open() until the binary opens the FIFO for reading.
    std::thread::spawn(move || {
        let _ = std::fs::write(
            &writer_path,
            "cdb-abcd1234 ap-guangzhou\ncdb-BAD ap-guangzhou\n",
        );
    });
    let p = fifo.to_str().unwrap();
    assert_rejected(
        &emu,
        p,
        p,
        2,
        "\"cdb-BAD\" is not a TencentDB for MySQL instance id",
    );
    cases += 1;

    // Standard input.
    {
        let env = Env::new(&emu.url);
        let mut c = env.cmd(SECRET_KEY);
        c.args(["run", "--instances", "-"]).args(FAST);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(
                    b"InstanceId,Region\ncdb-abcd1234,ap-guangzhou\ncdb-abcd1234,ap-beijing\n",
                )
                .unwrap();
        }
        let o = child.wait_with_output().unwrap();
        let t = text(&o);
        assert_eq!(code(&o), 2, "{t}");
        assert!(
            t.contains("<stdin>:3: duplicate InstanceId cdb-abcd1234"),
            "{t}"
        );
        cases += 1;
    }
    assert_eq!(emu.truth().requests_total, 0, "bad input sent requests");
    assert!(cases >= 40, "{cases} cases");

    // Valid by SPEC §4: accepted, every instance parsed (plan reads, sends no write).
    for name in ACCEPTED {
        let env = Env::new(&emu.url);
        let mut c = env.cmd(SECRET_KEY);
        c.args(["plan", "--instances"]).arg(dir.join(name));
        let o = output(c);
        let t = text(&o);
        assert_eq!(code(&o), 0, "{name}: {t}");
        assert!(
            t.contains("plan: 2 instance(s) would be encrypted, 0 already encrypted, 0 cannot be encrypted"),
            "{name}: {t}"
        );
    }
    assert_eq!(emu.truth().total_open_calls(), 0, "plan sent a write");
}

/// A good journal of both instances, encrypted by a real run.
fn good_journal(emu: &EmulatorThread, env: &Env) -> PathBuf {
    let mut c = env.cmd(SECRET_KEY);
    c.args(["run", "--instances"])
        .arg(corpus().join("ok_bom.csv"))
        .args(FAST);
    let o = output(c);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(emu.truth().requests_total > 0);
    env.journal()
}

/// The binary with credentials, the emulator and `journal`.
fn with_journal(emu: &EmulatorThread, home: &Path, journal: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .arg("--journal")
        .arg(journal)
        .arg("--endpoint")
        .arg(&emu.url)
        .stdin(Stdio::null());
    c
}

/// Mounts a tmpfs (root with CAP_SYS_ADMIN only); unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every command that uses the journal, with the situation's own arguments.
fn journal_commands(input: &Path) -> Vec<Vec<String>> {
    let i = input.display().to_string();
    let fast: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
    let with = |v: &[&str], f: bool| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        if f {
            v.extend(fast.clone());
        }
        v
    };
    vec![
        with(&["run", "--instances", &i], true),
        with(&["resume"], true),
        with(&["plan", "--instances", &i], false),
        with(&["status"], false),
        with(&["status", "--json"], false),
        with(&["report", "--format", "json"], false),
        with(&["report", "--format", "html"], false),
        with(&["retry-failed"], false),
        with(&["journal", "verify"], false),
    ]
}

#[test]
fn unusable_journal_exits_2_for_every_command() {
    let emu = EmulatorThread::start(fast_config(50), world());
    let base = Env::new(&emu.url);
    let good = good_journal(&emu, &base);
    let input = corpus().join("ok_bom.csv");
    let s = tempfile::tempdir().unwrap();
    let s = s.path();

    // (name, journal path, what the message must say)
    let mut cases: Vec<(&str, PathBuf, String)> = Vec::new();

    let newer = s.join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    {
        let c = rusqlite::Connection::open(&newer).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    cases.push(("newer schema", newer, "schema version 99".into()));

    let bytes = std::fs::read(&good).unwrap();
    assert!(bytes.len() > 8192, "a journal of more than two pages");
    let truncated = s.join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    cases.push(("truncated", truncated, "truncated".into()));
    let header_only = s.join("header-only.db");
    std::fs::write(&header_only, &bytes[..60]).unwrap();
    cases.push(("cut inside the header", header_only, "truncated".into()));

    let text_file = s.join("notes.db");
    std::fs::write(&text_file, "InstanceId,Region\ncdb-abcd1234,ap-guangzhou\n").unwrap();
    cases.push(("not a database", text_file, "not an SQLite database".into()));
    let zeros = s.join("zeros.db");
    std::fs::write(&zeros, vec![0u8; 8192]).unwrap();
    cases.push(("zeros", zeros, "not an SQLite database".into()));

    let dir = s.join("dir.db");
    std::fs::create_dir(&dir).unwrap();
    cases.push(("a directory", dir, "is a directory".into()));

    cases.push((
        "a device",
        PathBuf::from("/dev/null"),
        "not a regular file".into(),
    ));

    // A read-only directory: root writes through mode bits, so a read-only tmpfs when
    // it can be mounted; else mode 0555 (which stops a non-root user).
    let ro_at = s.join("ro");
    let _ro = Mount::tmpfs(&ro_at, "ro,size=64k");
    if _ro.is_none() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro_at, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let ro_writable = std::fs::write(ro_at.join("probe"), "x").is_ok();
    if ro_writable {
        eprintln!("skipped: a read-only journal directory (root, and no tmpfs mount allowed)");
    } else {
        cases.push((
            "a read-only directory",
            ro_at.join("fleet.db"),
            "fleet.db".into(),
        ));
    }

    for (name, journal, says) in &cases {
        for args in journal_commands(&input) {
            if *name == "a read-only directory" && args[0] == "plan" {
                // plan never creates the journal, so a directory it could not be made
                // in is `run`'s problem, not plan's (plan checks an existing journal).
                continue;
            }
            // `resume` and the readers need an existing journal; a read-only directory
            // has none, which is the "no such journal" exit 2 of its own.
            let before = emu.truth().requests_total;
            let mut c = with_journal(&emu, base.dir.path(), journal);
            c.args(&args);
            let o = output(c);
            let t = text(&o);
            let what = format!("{name} / {}", args[..2.min(args.len())].join(" "));
            assert_eq!(code(&o), 2, "{what}: {t}");
            let shown = journal.display().to_string();
            assert!(t.contains(&shown), "{what}: the message names {shown}: {t}");
            let expect = if *name == "a read-only directory"
                && !args[0].starts_with("run")
                && args[0] != "plan"
            {
                "no"
            } else {
                says.as_str()
            };
            assert!(
                t.to_lowercase().contains(&expect.to_lowercase()),
                "{what}: expected {expect:?}: {t}"
            );
            assert_eq!(emu.truth().requests_total, before, "{what}: sent requests");
        }
    }
    assert!(
        !Path::new("/dev/null.lock").exists(),
        "a device journal must be rejected before its lock file is made"
    );

    // A full disk: a tmpfs filled to the last byte.
    let full_at = s.join("full");
    match Mount::tmpfs(&full_at, "size=64k") {
        None => eprintln!("skipped: a journal on a full disk (no tmpfs mount allowed)"),
        Some(_full) => {
            let fill = full_at.join("fill");
            let mut f = std::fs::File::create(&fill).unwrap();
            {
                use std::io::Write;
                let chunk = [0u8; 4096];
                while f.write_all(&chunk).is_ok() {}
                let _ = f.write_all(&[0u8; 1]);
            }
            let journal = full_at.join("fleet.db");
            let before = emu.truth().requests_total;
            let mut c = with_journal(&emu, base.dir.path(), &journal);
            c.args(["run", "--instances"]).arg(&input).args(FAST);
            let o = output(c);
            let t = text(&o);
            assert_eq!(code(&o), 2, "full disk: {t}");
            assert!(t.contains(&journal.display().to_string()), "{t}");
            assert!(t.contains("full"), "{t}");
            assert_eq!(
                emu.truth().requests_total,
                before,
                "full disk: sent requests"
            );
        }
    }

    // A broken chain is not an unusable journal: `journal verify` keeps exit 1.
    let edited = s.join("edited.db");
    std::fs::copy(&good, &edited).unwrap();
    {
        let c = rusqlite::Connection::open(&edited).unwrap();
        c.execute_batch(
            "UPDATE instances SET state = 'pending' WHERE instance_id = 'cdb-abcd1234';",
        )
        .unwrap();
    }
    let mut c = with_journal(&emu, base.dir.path(), &edited);
    c.args(["journal", "verify"]);
    let o = output(c);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("journal BROKEN"), "{}", text(&o));
}

/// What a command did with a situation: an exit code, or still running (a server).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    Exit(i32),
    Serving,
}
use Outcome::*;

#[test]
fn exit_code_table() {
    let emu = EmulatorThread::start(fast_config(50), world());
    let env = Env::new(&emu.url);
    let s = env.dir.path();
    let fleet = corpus().join("ok_bom.csv");
    let bad = corpus().join("many_problems.csv");
    let missing = s.join("no-such.db");
    let unusable = s.join("not-a-journal.db");
    std::fs::write(
        &unusable,
        "this is not a database, it only has the name of one\n",
    )
    .unwrap();
    let report = s.join("demo.html");
    let f = fleet.display().to_string();
    let b = bad.display().to_string();
    let r = report.display().to_string();

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Situation {
        Success,
        UnknownFlag,
        BadInput,
        UnusableJournal,
        NoCredentials,
    }
    use Situation::*;

    // The arguments of each command per situation (None: the flag is added below).
    type Row<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, [Outcome; 5]);
    // [success, unknown flag, bad input, unusable journal, missing credentials]
    let rows: Vec<Row> = vec![
        // run: bad input = a bad CSV.
        (
            "run",
            vec!["run", "--instances", &f],
            vec!["run", "--instances", &b],
            [Exit(0), Exit(2), Exit(2), Exit(2), Exit(3)],
        ),
        (
            "resume",
            vec!["resume"],
            vec!["resume", "@missing"],
            [Exit(0), Exit(2), Exit(2), Exit(2), Exit(3)],
        ),
        (
            "plan",
            vec!["plan", "--instances", &f],
            vec!["plan", "--instances", &b],
            [Exit(0), Exit(2), Exit(2), Exit(2), Exit(3)],
        ),
        // The journal readers need no credentials; bad input = no journal there.
        (
            "status",
            vec!["status"],
            vec!["status", "@missing"],
            [Exit(0), Exit(2), Exit(2), Exit(2), Exit(0)],
        ),
        (
            "report",
            vec!["report", "--format", "md"],
            vec!["report", "--format", "md", "@missing"],
            [Exit(0), Exit(2), Exit(2), Exit(2), Exit(0)],
        ),
        (
            "retry-failed",
            vec!["retry-failed"],
            vec!["retry-failed", "@missing"],
            [Exit(0), Exit(2), Exit(2), Exit(2), Exit(0)],
        ),
        (
            "journal verify",
            vec!["journal", "verify"],
            vec!["journal", "verify", "@missing"],
            [Exit(0), Exit(2), Exit(2), Exit(2), Exit(0)],
        ),
        // These do not use --journal: an unusable one does not change their outcome.
        (
            "discover",
            vec!["discover", "--region", "ap-guangzhou"],
            vec![
                "discover",
                "--region",
                "ap-guangzhou",
                "--tag",
                "no-equals-sign",
            ],
            [Exit(0), Exit(2), Exit(2), Exit(0), Exit(3)],
        ),
        (
            "call",
            vec![
                "call",
                "cdb",
                "DescribeDBInstances",
                "{}",
                "--region",
                "ap-guangzhou",
            ],
            vec![
                "call",
                "cdb",
                "DescribeDBInstances",
                "{not json",
                "--region",
                "ap-guangzhou",
            ],
            [Exit(0), Exit(2), Exit(2), Exit(0), Exit(3)],
        ),
        // demo and the emulator need no credentials (the demo signs with its own).
        (
            "demo",
            vec!["demo", "--fleet", &f, "--report", "@report"],
            vec!["demo", "--fleet", &b, "--report", "@report"],
            [Exit(0), Exit(2), Exit(2), Exit(0), Exit(0)],
        ),
        (
            "emulator",
            vec!["emulator", "--listen", "127.0.0.1:0", "--fleet", &f],
            vec!["emulator", "--listen", "127.0.0.1:0", "--fleet", &b],
            [Serving, Exit(2), Exit(2), Serving, Serving],
        ),
    ];

    let mut table = String::from(
        "command          success  unknown-flag  bad-input  unusable-journal  no-credentials\n",
    );
    let mut failures = Vec::new();
    for (name, ok_args, bad_args, expected) in &rows {
        // demo and the emulator run their own emulator: their cells run at once (the
        // demo takes seconds); the others run one by one, so each cell's request count
        // is its own.
        let parallel = matches!(*name, "demo" | "emulator");
        let mut got = [Exit(-1); 5];
        let mut running = Vec::new();
        for (k, situation) in [
            Success,
            UnknownFlag,
            BadInput,
            UnusableJournal,
            NoCredentials,
        ]
        .into_iter()
        .enumerate()
        {
            let mut args: Vec<String> = match situation {
                BadInput => bad_args.clone(),
                _ => ok_args.clone(),
            }
            .into_iter()
            .map(|a| a.replace("@report", &format!("{r}.{k}.html")))
            .collect();
            let mut journal = env.journal();
            if let Some(at) = args.iter().position(|a| a == "@missing") {
                args.remove(at);
                journal = missing.clone();
            }
            if situation == UnknownFlag {
                args.push("--no-such-flag".into());
            }
            if situation == UnusableJournal {
                journal = unusable.clone();
            }
            let mut c = Command::new(BIN);
            c.env_clear()
                .env("HOME", s)
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .arg("--journal")
                .arg(&journal)
                .arg("--endpoint")
                .arg(&emu.url)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if matches!(*name, "run" | "resume") {
                c.args(FAST);
            }
            if situation != NoCredentials {
                c.env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
                    .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY);
            }
            let before = emu.truth().requests_total;
            let child = c.spawn().unwrap();
            running.push((k, situation, child));
            if parallel {
                continue;
            }
            let (k, situation, child) = running.pop().unwrap();
            let o = child.wait_with_output().unwrap();
            got[k] = Exit(code(&o));
            if got[k] != expected[k] {
                failures.push(format!("{name} / {situation:?}: {}", text(&o)));
            }
            if expected[k] != Exit(0) {
                assert_eq!(
                    emu.truth().requests_total,
                    before,
                    "{name} / {situation:?}: sent requests"
                );
            }
        }
        if parallel {
            // A server is serving if it is still up after a moment; then it is stopped.
            std::thread::sleep(std::time::Duration::from_millis(700));
            for (k, situation, mut child) in running {
                got[k] = if expected[k] == Serving && child.try_wait().unwrap().is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                    Serving
                } else {
                    let o = child.wait_with_output().unwrap();
                    if Exit(code(&o)) != expected[k] {
                        failures.push(format!("{name} / {situation:?}: {}", text(&o)));
                    }
                    Exit(code(&o))
                };
            }
        }
        let cell = |o: Outcome| match o {
            Exit(c) => c.to_string(),
            Serving => "serves".into(),
        };
        table.push_str(&format!(
            "{name:<16} {:>7}  {:>12}  {:>9}  {:>16}  {:>14}\n",
            cell(got[0]),
            cell(got[1]),
            cell(got[2]),
            cell(got[3]),
            cell(got[4])
        ));
        if got != *expected {
            failures.push(format!("{name}: got {got:?}, expected {expected:?}"));
        }
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "{table}\n{}", failures.join("\n"));
}
