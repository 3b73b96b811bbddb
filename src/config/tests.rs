//! The accounts file's contract: every key, every error with its file:line.

use super::*;

fn parse_ok(text: &str) -> Vec<AccountTarget> {
    parse("accounts.toml", text).unwrap().accounts
}

fn parse_err(text: &str) -> String {
    parse("accounts.toml", text).unwrap_err().to_string()
}

#[test]
fn defaults_apply_and_accounts_override() {
    let accounts = parse_ok(
        r#"
[defaults]
role_name = "Sweeper"
external_id = "ext-123"
exclude_users = ["break-glass-*"]

[[account]]
id = "111111111111"
name = "prod"

[[account]]
id = "222222222222"
role_arn = "arn:aws:iam::222222222222:role/ops/Custom"
session_name = "audit"
exclude_users = []

[[account]]
id = "333333333333"
assume_role = false
"#,
    );
    assert_eq!(accounts.len(), 3);
    assert_eq!(accounts[0].label(), "111111111111 (prod)");
    assert_eq!(
        accounts[0].access,
        Access::AssumeRole {
            role_arn: "arn:aws:iam::111111111111:role/Sweeper".into(),
            external_id: Some("ext-123".into()),
            session_name: "iamsweep".into(),
            session_seconds: None,
        }
    );
    assert!(accounts[0].filters.user_excluded("break-glass-7"));
    assert_eq!(
        accounts[1].role_arn(),
        Some("arn:aws:iam::222222222222:role/ops/Custom")
    );
    assert_eq!(accounts[1].session_name(), Some("audit"));
    assert!(!accounts[1].filters.user_excluded("break-glass-7"));
    assert_eq!(accounts[2].access, Access::BaseCredentials);
}

#[test]
fn partition_builds_the_role_arn() {
    let a = parse_ok("[[account]]\nid = \"111111111111\"\npartition = \"aws-cn\"\n");
    assert_eq!(
        a[0].role_arn(),
        Some("arn:aws-cn:iam::111111111111:role/IamSweepRole")
    );
    assert_eq!(a[0].partition.iam_region(), "cn-north-1");
}

#[test]
fn the_partition_comes_from_a_role_arn_or_the_management_role() {
    let f = parse(
        "accounts.toml",
        "[[account]]\nid = \"111111111111\"\nrole_arn = \"arn:aws-us-gov:iam::111111111111:role/x\"\n\n[[account]]\nid = \"222222222222\"\n",
    )
    .unwrap();
    assert_eq!(f.partition, Partition::AwsUsGov);
    // The account without a role ARN follows the file's partition.
    assert_eq!(
        f.accounts[1].role_arn(),
        Some("arn:aws-us-gov:iam::222222222222:role/IamSweepRole")
    );
    let f = parse(
        "accounts.toml",
        "[organization]\nmanagement_role_arn = \"arn:aws-cn:iam::999999999999:role/OrgReader\"\n",
    )
    .unwrap();
    assert_eq!(f.partition, Partition::AwsCn);
    let found = f
        .discovered(&AccountId::parse("333333333333").unwrap(), "x", "Root")
        .unwrap();
    assert_eq!(found.partition, Partition::AwsCn);
    assert_eq!(
        found.role_arn(),
        Some("arn:aws-cn:iam::333333333333:role/IamSweepRole")
    );
    assert_eq!(
        parse("accounts.toml", "[[account]]\nid = \"111111111111\"\n")
            .unwrap()
            .partition,
        Partition::Aws
    );
}

#[test]
fn mixed_partitions_are_refused_with_both_lines() {
    // Each way of naming a partition, against [defaults] partition = "aws-us-gov".
    for (entry, line, key) in [
        ("partition = \"aws\"", 5, "partition"),
        (
            "role_arn = \"arn:aws-cn:iam::111111111111:role/x\"",
            5,
            "role_arn",
        ),
    ] {
        let e = parse_err(&format!(
            "[defaults]\npartition = \"aws-us-gov\"\n[[account]]\nid = \"111111111111\"\n{entry}\n"
        ));
        assert!(
            e.starts_with(&format!("accounts.toml:{line}: key `{key}`: partition ")),
            "{e}"
        );
        assert!(
            e.contains("but line 2 (`partition`) is in partition aws-us-gov"),
            "{e}"
        );
        assert!(e.contains("one accounts file per partition"), "{e}");
    }
    let e = parse_err(
        "[organization]\nmanagement_role_arn = \"arn:aws:iam::999999999999:role/OrgReader\"\n\n[[account]]\nid = \"111111111111\"\npartition = \"aws-cn\"\n",
    );
    assert!(
        e.starts_with("accounts.toml:6: key `partition`: partition aws-cn, but line 2 (`management_role_arn`) is in partition aws"),
        "{e}"
    );
    // Two accounts, each consistent on its own, in two partitions.
    let e = parse_err(
        "[[account]]\nid = \"111111111111\"\nrole_arn = \"arn:aws:iam::111111111111:role/x\"\n[[account]]\nid = \"222222222222\"\nrole_arn = \"arn:aws-us-gov:iam::222222222222:role/x\"\n",
    );
    assert!(e.starts_with("accounts.toml:6: key `role_arn`"), "{e}");
}

#[test]
fn the_documented_examples_parse() {
    let example = parse("accounts.toml", include_str!("../../accounts.toml")).unwrap();
    assert_eq!(example.partition, Partition::Aws);
    // Every ```toml block of the README and of every docs page.
    let root = env!("CARGO_MANIFEST_DIR");
    let mut pages = vec!["README.md".to_owned()];
    for entry in std::fs::read_dir(format!("{root}/docs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            pages.push(format!("docs/{name}"));
        }
    }
    let docs: Vec<(String, String)> = pages
        .into_iter()
        .map(|page| {
            let text = std::fs::read_to_string(format!("{root}/{page}")).unwrap();
            (page, text)
        })
        .collect();
    let blocks: Vec<(&str, &str)> = docs
        .iter()
        .flat_map(|(name, text)| {
            text.split("```toml\n")
                .skip(1)
                .map(move |b| (name.as_str(), b.split("```").next().unwrap()))
        })
        .collect();
    assert!(blocks.len() >= 3, "{}", blocks.len());
    let partitions: Vec<Partition> = blocks
        .iter()
        .map(|(name, b)| {
            parse(name, b)
                .unwrap_or_else(|e| panic!("{e}\n{b}"))
                .partition
        })
        .collect();
    assert!(partitions.contains(&Partition::AwsUsGov), "{partitions:?}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = parse_err("[[account]]\nid = \"111111111111\"\nrole = \"x\"\n");
    assert!(e.starts_with("accounts.toml:3: "), "{e}");
    assert!(e.contains("`role`"), "{e}");
}

#[test]
fn unknown_key_in_defaults() {
    let e = parse_err("[defaults]\nrolename = \"x\"\n[[account]]\nid = \"111111111111\"\n");
    assert!(e.starts_with("accounts.toml:2: "), "{e}");
    assert!(e.contains("`rolename`"), "{e}");
}

#[test]
fn unknown_top_level_table() {
    let e = parse_err("[[accounts]]\nid = \"111111111111\"\n");
    assert!(e.starts_with("accounts.toml:1: "), "{e}");
    assert!(e.contains("`accounts`"), "{e}");
}

#[test]
fn duplicate_ids_name_both_lines() {
    let e = parse_err("[[account]]\nid = \"111111111111\"\n\n[[account]]\nid = \"111111111111\"\n");
    assert_eq!(
        e,
        "accounts.toml:5: key `id`: duplicate account id 111111111111 (first listed at line 2)"
    );
}

#[test]
fn short_and_numeric_ids_are_refused() {
    let e = parse_err("[[account]]\nid = \"12345\"\n");
    assert_eq!(
        e,
        "accounts.toml:2: key `id`: `12345` is not a 12-digit AWS account id"
    );
    let e = parse_err("[[account]]\nname = \"x\"\nid = 111111111111\n");
    assert!(e.starts_with("accounts.toml:3: "), "{e}");
    assert!(e.contains("string"), "{e}");
}

#[test]
fn malformed_role_arns_are_refused() {
    for (arn, why) in [
        ("arn:aws:iam::111111111111:user/x", "`role/`"),
        ("arn:aws:s3::111111111111:role/x", "`iam`"),
        ("arn:aws:iam::1111:role/x", "12 digits"),
        ("arn:aws:iam::111111111111:role/", "1 to 64"),
        ("arn:aws:iam::111111111111:role/a b", "letters"),
        ("arn:aws-xx:iam::111111111111:role/x", "partition"),
        ("role/x", "six"),
    ] {
        let e = parse_err(&format!(
            "[[account]]\nid = \"111111111111\"\nrole_arn = \"{arn}\"\n"
        ));
        assert!(e.starts_with("accounts.toml:3: key `role_arn`: "), "{e}");
        assert!(e.contains(why), "{arn}: {e}");
    }
}

#[test]
fn role_arn_of_another_account_is_refused() {
    let e = parse_err(
        "[[account]]\nid = \"111111111111\"\nrole_arn = \"arn:aws:iam::222222222222:role/x\"\n",
    );
    assert!(
        e.contains("account 222222222222, not in account 111111111111"),
        "{e}"
    );
}

#[test]
fn assume_role_false_with_a_role_is_contradictory() {
    let e =
        parse_err("[[account]]\nid = \"111111111111\"\nassume_role = false\nrole_name = \"x\"\n");
    assert!(e.starts_with("accounts.toml:4: key `role_name`"), "{e}");
}

#[test]
fn session_duration_is_a_duration_sts_allows_and_named_when_it_is_not() {
    let accounts = parse_ok(
        "[defaults]\nsession_duration = \"4h\"\n[[account]]\nid = \"111111111111\"\n[[account]]\nid = \"222222222222\"\nsession_duration = \"90m\"\n",
    );
    let secs = |a: &AccountTarget| match &a.access {
        Access::AssumeRole {
            session_seconds, ..
        } => *session_seconds,
        Access::BaseCredentials => None,
    };
    assert_eq!(secs(&accounts[0]), Some(4 * 3600));
    assert_eq!(secs(&accounts[1]), Some(90 * 60));
    for (value, says) in [
        ("\"13h\"", "outside what STS allows"),
        ("\"soon\"", "not a duration"),
    ] {
        let e = parse(
            "accounts.toml",
            &format!("[[account]]\nid = \"111111111111\"\nsession_duration = {value}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("accounts.toml:3: key `session_duration`"),
            "{e}"
        );
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn bad_glob_and_session_name_are_named() {
    let e = parse_err("[[account]]\nid = \"111111111111\"\nexclude_users = [\"a[\"]\n");
    assert!(e.starts_with("accounts.toml:3: key `exclude_users`"), "{e}");
    let e =
        parse_err("[defaults]\nsession_name = \"has space\"\n[[account]]\nid = \"111111111111\"\n");
    assert!(e.starts_with("accounts.toml:2: key `session_name`"), "{e}");
}

#[test]
fn no_accounts_is_an_error() {
    let e = parse_err("[defaults]\nrole_name = \"x\"\n");
    assert!(e.contains("no accounts"), "{e}");
}

#[test]
fn organization_section_is_validated() {
    let f = parse(
        "accounts.toml",
        "[organization]\nmanagement_role_arn = \"arn:aws:iam::999999999999:role/OrgReader\"\ninclude_ous = [\"ou-ab12-abcdefgh\", \"r-ab12\"]\nexclude_accounts = [\"111111111111\"]\n",
    )
    .unwrap();
    let spec = f.organization.unwrap();
    assert_eq!(spec.include_ous, ["ou-ab12-abcdefgh", "r-ab12"]);
    assert_eq!(spec.exclude_accounts[0].as_str(), "111111111111");
    assert!(!spec.include_inactive);
    assert!(f.accounts.is_empty());
    let e = parse_err("[organization]\ninclude_ous = [\"prod\"]\n");
    assert!(
        e.starts_with("accounts.toml:2: key `include_ous`: `prod` is not an OU"),
        "{e}"
    );
    let e = parse_err("[organization]\nexclude_accounts = [\"12\"]\n");
    assert!(
        e.starts_with("accounts.toml:2: key `exclude_accounts`"),
        "{e}"
    );
    let e = parse_err("[organization]\nmanagement_role_arn = \"nope\"\n");
    assert!(
        e.starts_with("accounts.toml:2: key `management_role_arn`"),
        "{e}"
    );
    let e = parse_err("[organization]\nous = []\n");
    assert!(e.starts_with("accounts.toml:2: "), "{e}");
    // Defaults are checked even with no [[account]] to apply them to.
    let e = parse_err("[defaults]\nrole_name = \"a b\"\n[organization]\n");
    assert!(e.starts_with("accounts.toml:2: key `role_name`"), "{e}");
}

#[test]
fn toml_syntax_errors_carry_the_line() {
    let e = parse_err("[[account]]\nid = \"111111111111\n");
    assert!(e.starts_with("accounts.toml:2: "), "{e}");
}

const TWO: &str = "[[account]]\nid = \"111111111111\"\n\n[[account]]\nid = \"222222222222\"\n";

#[test]
fn exceptions_reach_the_accounts_they_name_with_their_line() {
    let text = format!(
        "{TWO}\n[[exception]]\naccounts = [\"111111111111\"]\nusers = [\"ci-*\"]\npolicies = [\"arn:*:iam::aws:policy/ReadOnlyAccess\"]\nreason = \"CHG-1234\"\nowner = \"platform@example.com\"\nexpires = 2027-01-31\n\n[[exception]]\nusers = [\"alice\"]\nreason = \"CHG-9\"\nowner = \"sec@example.com\"\nexpires = 2027-01-31T18:00:00+02:00\n"
    );
    let file = parse("accounts.toml", &text).unwrap();
    assert_eq!(file.exceptions.len(), 2);
    let (first, second) = (&file.exceptions[0], &file.exceptions[1]);
    assert_eq!((first.line, second.line), (7, 15));
    assert_eq!(first.until, "2027-02-01T00:00:00.000Z");
    assert_eq!(first.expires, "2027-01-31");
    assert_eq!(second.until, "2027-01-31T16:00:00.000Z");
    assert!(second.accounts.is_empty(), "every account");
    let of = |id: &str| {
        file.accounts
            .iter()
            .find(|a| a.id.as_str() == id)
            .unwrap()
            .filters
            .exceptions
            .iter()
            .map(|e| e.line)
            .collect::<Vec<_>>()
    };
    assert_eq!(of("111111111111"), vec![7, 15]);
    assert_eq!(of("222222222222"), vec![15]);
}

#[test]
fn every_exception_key_is_checked_and_named_with_its_line() {
    let base = "users = [\"alice\"]\nreason = \"CHG-1\"\nowner = \"a@b.c\"\nexpires = 2027-01-31\n";
    let with = |body: &str| parse_err(&format!("{TWO}\n[[exception]]\n{body}"));
    // The table starts at line 7; a key's own error is on its own line.
    for (body, line, needle) in [
        (
            base.replace("reason = \"CHG-1\"\n", ""),
            7,
            "key `reason` is required",
        ),
        (
            base.replace("owner = \"a@b.c\"\n", ""),
            7,
            "key `owner` is required",
        ),
        (
            base.replace("expires = 2027-01-31\n", ""),
            7,
            "key `expires` is required",
        ),
        (base.replace("\"CHG-1\"", "\" \""), 9, "key `reason`: empty"),
        (base.replace("\"a@b.c\"", "\"\""), 10, "key `owner`: empty"),
        (
            base.replace("2027-01-31", "2027-01-31T18:00:00"),
            11,
            "key `expires`: a date-time needs its offset",
        ),
        (base.replace("2027-01-31", "\"soon\""), 11, "expires"),
        (
            base.replace("2027-01-31", "9999-12-31"),
            11,
            "key `expires`: `9999-12-31` is out of range",
        ),
        (
            base.replace("users = [\"alice\"]\n", ""),
            7,
            "name `users`, `policies` or both",
        ),
        (
            base.replace("[\"alice\"]", "[]"),
            8,
            "key `users`: empty list",
        ),
        (
            base.replace("[\"alice\"]", "[\"a[\"]"),
            8,
            "key `users`: `a[` is not a valid glob",
        ),
        (
            format!("policies = [\"arn:{{\"]\n{base}"),
            8,
            "key `policies`",
        ),
        (
            format!("accounts = [\"12345\"]\n{base}"),
            8,
            "key `accounts`",
        ),
        (
            format!("owners = \"x\"\n{base}"),
            8,
            "unknown field `owners`",
        ),
    ] {
        let e = with(&body);
        assert!(
            e.starts_with(&format!("accounts.toml:{line}: ")) && e.contains(needle),
            "{body:?}: {e}"
        );
    }
}

#[test]
fn owner_tag_comes_from_defaults_an_account_may_override_it_and_it_is_checked() {
    let targets = parse_ok(
        "[defaults]\nowner_tag = \"Owner\"\n\n[[account]]\nid = \"111111111111\"\n\n[[account]]\nid = \"222222222222\"\nowner_tag = \"team\"\n",
    );
    assert_eq!(targets[0].owner_tag.as_deref(), Some("Owner"));
    assert_eq!(targets[1].owner_tag.as_deref(), Some("team"));
    assert_eq!(parse_ok(TWO)[0].owner_tag, None);
    let e = parse_err("[defaults]\nowner_tag = \"\"\n\n[[account]]\nid = \"111111111111\"\n");
    assert!(e.starts_with("accounts.toml:2: key `owner_tag`"), "{e}");
}
