//! The loader on small inputs: shapes, defaults, line numbers, duplicates.

use super::bytes::StripCr;
use super::*;
use std::io::Read;

fn parse_str(s: &str) -> Result<Vec<InstanceSpec>, InputError> {
    parse("fleet.csv", s.as_bytes(), &Defaults::default())
}

#[test]
fn csv_with_bom_crlf_any_case_and_labels() {
    let s = "\u{feff}Team,instanceid,REGION,KeyId,keyregion\r\nblue,cdb-abcd1234,ap-guangzhou,,\r\nred,cdb-efgh5678,ap-shanghai,23e80852-1e38-11e9-b129-5cb9019b4b01,ap-shanghai\r\n";
    let v = parse_str(s).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].id, "cdb-abcd1234");
    assert_eq!(v[0].region, "ap-guangzhou");
    assert_eq!(v[0].key_id, None);
    assert_eq!(v[0].labels, vec![("Team".to_string(), "blue".to_string())]);
    assert_eq!((v[0].line, v[1].line), (2, 3), "{v:?}");
    assert_eq!(v[1].key_region.as_deref(), Some("ap-shanghai"));
    assert_eq!(v[1].line, 3);
}

#[test]
fn list_with_comments_and_regions() {
    let s = "# fleet\n\ncdb-abcd1234 ap-guangzhou\n  cdb-efgh5678   ap-tokyo # tokyo one\n";
    let v = parse("list.txt", s.as_bytes(), &Defaults::default()).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].region, "ap-tokyo");
    assert_eq!(v[1].line, 4);
}

#[test]
fn defaults_fill_empty_cells() {
    let d = Defaults {
        region: Some("ap-beijing".into()),
        ..Defaults::default()
    };
    let v = parse("l", "cdb-abcd1234\n".as_bytes(), &d).unwrap();
    assert_eq!(v[0].region, "ap-beijing");
}

#[test]
fn all_problems_at_once_with_lines() {
    let s = "InstanceId,Region,KeyId,KeyRegion\n\
             cdb-ABCD1234,ap-guangzhou,,\n\
             cdb-abcd1234,ap-nowhere,,\n\
             cdb-efgh5678,ap-guangzhou,key-1,\n\
             cdb-ijkl9012,ap-guangzhou,,\n\
             cdb-ijkl9012,ap-shanghai,,\n\
             cdbro-mnop3456,ap-guangzhou,,\n\
             cdb-qrst7890,ap-guangzhou\n";
    let err = parse_str(s).unwrap_err();
    let text = err.to_string();
    let lines: Vec<u64> = err.problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![2, 3, 4, 6, 7, 8], "{text}");
    assert!(
        text.contains("fleet.csv:2: InstanceId \"cdb-ABCD1234\""),
        "{text}"
    );
    assert!(
        text.contains("fleet.csv:3: cdb-abcd1234: unknown region \"ap-nowhere\""),
        "{text}"
    );
    assert!(
        text.contains("fleet.csv:4: cdb-efgh5678: KeyId key-1 is given without a KeyRegion"),
        "{text}"
    );
    assert!(
        text.contains("fleet.csv:6: duplicate InstanceId cdb-ijkl9012 conflicts with line 5"),
        "{text}"
    );
    assert!(text.contains("read-only"), "{text}");
    assert!(text.contains("fleet.csv:8: expected 4 fields"), "{text}");
    assert!(text.contains("nothing was sent"), "{text}");
}

#[test]
fn an_account_column_names_each_rows_profile_and_is_no_label() {
    let s = "InstanceId,Region,account,Team\ncdb-abcd1234,ap-guangzhou,prod-a,blue\ncdb-efgh5678,ap-guangzhou,,red\ncdb-ijkl9012,ap-guangzhou,prod-b,red\n";
    let v = parse_str(s).unwrap();
    let accounts: Vec<_> = v.iter().map(|s| s.account.as_deref()).collect();
    assert_eq!(accounts, vec![Some("prod-a"), None, Some("prod-b")]);
    assert_eq!(v[0].labels, vec![("Team".to_string(), "blue".to_string())]);
    let checked = validate::validate_bytes(s, &Defaults::default());
    assert_eq!(
        checked.accounts().collect::<Vec<_>>(),
        vec!["prod-a", "prod-b"]
    );
    assert!(checked.has_unnamed());
    // Without an account column every row uses the run's own credentials.
    let plain = validate::validate_bytes(
        "InstanceId,Region\ncdb-abcd1234,ap-guangzhou\n",
        &Defaults::default(),
    );
    assert_eq!(plain.accounts().count(), 0);
    assert!(plain.has_unnamed());
}

#[test]
fn account_column_names_another_column_which_must_be_there() {
    let d = Defaults {
        account_column: Some("Owner".into()),
        ..Defaults::default()
    };
    let s = "InstanceId,Region,Owner,Account\ncdb-abcd1234,ap-guangzhou,team-a,ignored\n";
    let v = parse("fleet.csv", s.as_bytes(), &d).unwrap();
    assert_eq!(v[0].account.as_deref(), Some("team-a"));
    // The column `Account` is then an ordinary label.
    assert_eq!(
        v[0].labels,
        vec![("Account".to_string(), "ignored".to_string())]
    );
    let err = parse(
        "fleet.csv",
        "InstanceId,Region\ncdb-abcd1234,ap-guangzhou\n".as_bytes(),
        &d,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "fleet.csv:1: the header row has no \"Owner\" column (named by --account-column)"
        ),
        "{err}"
    );
    // An instance list has no columns: every row would silently use the
    // run's own credentials.
    let err = parse("list.txt", "cdb-abcd1234 ap-guangzhou\n".as_bytes(), &d)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("list.txt:1: --account-column \"Owner\" needs a CSV input"),
        "{err}"
    );
    let region = Defaults {
        account_column: Some("region".into()),
        ..Defaults::default()
    };
    let err = parse("fleet.csv", s.as_bytes(), &region)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("names a column fleetcrypt reads for something else"),
        "{err}"
    );
}

#[test]
fn a_bad_profile_name_or_a_conflicting_account_is_an_input_error() {
    let s = "InstanceId,Region,Account\n\
             cdb-abcd1234,ap-guangzhou,../../etc/x\n\
             cdb-efgh5678,ap-guangzhou,prod-a\n\
             cdb-efgh5678,ap-guangzhou,prod-b\n";
    let err = parse_str(s).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("fleet.csv:2: cdb-abcd1234: Account \"../../etc/x\" is not a profile name"),
        "{text}"
    );
    assert!(
        text.contains("fleet.csv:4: duplicate InstanceId cdb-efgh5678 conflicts with line 3"),
        "{text}"
    );
}

#[test]
fn exact_duplicates_are_merged() {
    let s = "InstanceId,Region\ncdb-abcd1234,ap-guangzhou\ncdb-abcd1234,ap-guangzhou\n";
    let v = parse_str(s).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].line, 2);
}

#[test]
fn empty_inputs_are_errors() {
    assert!(parse_str("").is_err());
    assert!(parse_str("InstanceId,Region\n").is_err());
    assert!(parse_str("# only a comment\n").is_err());
    let e = parse_str("Region,Name\nap-guangzhou,x\n");
    // No InstanceId column: read as a list, whose first word is not an id.
    assert!(e.is_err());
}

#[test]
fn missing_region_is_reported() {
    let err = parse_str("InstanceId\ncdb-abcd1234\n").unwrap_err();
    assert!(err.to_string().contains("no region"), "{err}");
}

#[test]
fn strip_cr_across_chunk_boundaries() {
    struct OneByte<'a>(&'a [u8]);
    impl Read for OneByte<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }
    let mut s = String::new();
    StripCr::new(OneByte(b"a\r\nb\rc\r"))
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "a\nb\rc\r");
}

proptest::proptest! {
    /// Whatever bytes arrive, parsing never panics, and good rows keep their line numbers.
    #[test]
    fn parse_never_panics(s in ".{0,400}") {
        let _ = parse_str(&s);
        let _ = parse("l", s.as_bytes(), &Defaults::default());
    }
}
