//! Unit tests for parsing, merging and validating configuration.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn embedded_defaults() {
    let c = Config::embedded(&no_env).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:5000");
    assert_eq!(c.data_dir, PathBuf::from("berth-data"));
    let hub = c.upstream("docker.io").unwrap();
    assert!(hub.default && hub.auto_library);
    assert_eq!(hub.url.as_str(), "https://registry-1.docker.io/");
    assert_eq!(hub.policy.tag_ttl, DEFAULT_TAG_TTL);
    for name in [
        "ghcr.io",
        "quay.io",
        "gcr.io",
        "registry.k8s.io",
        "k8s.gcr.io",
        "public.ecr.aws",
        "mcr.microsoft.com",
        "docker.cloudsmith.io",
        "nvcr.io",
    ] {
        assert!(c.upstream(name).is_some(), "{name}");
    }
    assert_eq!(c.upstreams.iter().filter(|u| u.default).count(), 1);
}

#[test]
fn file_entry_replaces_builtin_and_takes_default() {
    let text = r#"
        listen = "127.0.0.1:0"
        [[upstreams]]
        name = "docker.io"
        url = "http://127.0.0.1:9999"
        auto_library = true
        tag_ttl = "1m"
        username = "u"
        password = "p"
        [[upstreams]]
        name = "mine.example"
        url = "https://mine.example"
        default = true
    "#;
    let c = Config::from_toml(text, &no_env).unwrap();
    let hub = c.upstream("docker.io").unwrap();
    assert_eq!(hub.url.as_str(), "http://127.0.0.1:9999/");
    assert!(!hub.default);
    assert_eq!(hub.policy.tag_ttl, Duration::from_secs(60));
    assert_eq!(hub.credentials.as_ref().unwrap().password.expose(), "p");
    assert!(format!("{hub:?}").contains("Secret(***)"));
    assert!(!format!("{hub:?}").contains("\"p\""));
    assert!(c.upstream("mine.example").unwrap().default);
}

#[test]
fn unknown_key_is_named() {
    let err =
        Config::from_toml("[[upstreams]]\nname = \"a.io\"\nurll = \"x\"\n", &no_env).unwrap_err();
    // The entry without its url is not valid either, and says so, at the
    // entry's place.
    assert_eq!(err.0.len(), 2, "{err}");
    assert_eq!(err.0[0].key, "upstreams[0].url", "{err}");
    assert_eq!(err.0[1].key, "upstreams[0].urll", "{err}");
    assert_eq!(err.0[1].reason, "unknown key", "{err}");
}

#[test]
fn wrong_type_is_named() {
    let err = Config::from_toml("listen = 5000\n", &no_env).unwrap_err();
    assert_eq!(err.0[0].key, "listen", "{err}");
    let err = Config::from_toml(
        "[[upstreams]]\nname = \"a.io\"\ndefault = \"yes\"\n",
        &no_env,
    )
    .unwrap_err();
    // The entry's other problem (no url) is listed too.
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["upstreams[0].url", "upstreams[0].default"], "{err}");
}

#[test]
fn every_problem_is_listed() {
    let text = r#"
        listen = "nowhere"
        builtin_upstreams = false
        [[upstreams]]
        name = "Bad/Name"
        url = "ftp://x"
        tag_ttl = "soon"
        [[upstreams]]
        name = "b.io"
        url = "https://b.io"
        username = "only-user"
    "#;
    let err = Config::from_toml(text, &no_env).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "listen",
            "upstreams[0].name",
            "upstreams[0].url",
            "upstreams[0].tag_ttl",
            "upstreams[1].password"
        ],
        "{err}"
    );
}

#[test]
fn duplicates_and_two_defaults_are_refused() {
    let text = r#"
        builtin_upstreams = false
        [[upstreams]]
        name = "a.io"
        url = "https://a.io"
        default = true
        host_prefix = "x"
        [[upstreams]]
        name = "b.io"
        url = "https://b.io"
        default = true
        host_prefix = "x"
    "#;
    let err = Config::from_toml(text, &no_env).unwrap_err().to_string();
    assert!(
        err.contains("more than one upstream has default = true"),
        "{err}"
    );
    assert!(err.contains("upstreams.b.io.host_prefix"), "{err}");
}

#[test]
fn environment_overrides() {
    let env = |k: &str| match k {
        "BERTH_LISTEN" => Some("127.0.0.1:7000".to_owned()),
        "BERTH_UPSTREAM_DOCKER_IO_USERNAME" => Some("envuser".to_owned()),
        "BERTH_UPSTREAM_DOCKER_IO_PASSWORD" => Some("envpass".to_owned()),
        _ => None,
    };
    let c = Config::embedded(&env).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
    let creds = c
        .upstream("docker.io")
        .unwrap()
        .credentials
        .clone()
        .unwrap();
    assert_eq!(creds.username, "envuser");
    assert_eq!(creds.password.expose(), "envpass");
    let bad = |k: &str| (k == "BERTH_LISTEN").then(|| "x".to_owned());
    assert_eq!(Config::embedded(&bad).unwrap_err().0[0].key, "BERTH_LISTEN");
}

#[test]
fn example_config_parses() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let text = include_str!("../../../config/example.toml")
        .replace("/etc/berth/admin-token", &token.display().to_string());
    let c = Config::from_toml(&text, &no_env).unwrap();
    assert!(c.upstream("docker.io").is_some());
    assert!(c.admin.token.is_some(), "the example sets an admin token");
}

#[test]
fn minimal_config_parses_and_serves_the_public_registries() {
    let c = Config::from_toml(include_str!("../../../config/minimal.toml"), &no_env).unwrap();
    assert!(c.upstream("docker.io").is_some_and(|u| u.default));
    assert!(c.upstream("ghcr.io").is_some());
    assert_eq!(c.data_dir, std::path::Path::new("/var/lib/berth"));
    assert!(c.admin.listen.is_none());
}

#[test]
fn an_admin_listener_off_loopback_needs_a_token() {
    let text = |listen: &str, token: &str| format!("[admin]\nlisten = {listen:?}\n{token}\n");
    let err = Config::from_toml(&text("0.0.0.0:5090", ""), &no_env).unwrap_err();
    assert_eq!(err.0[0].key, "admin.token", "{err}");
    assert!(err.to_string().contains("not on loopback"), "{err}");
    let token = "token = \"0123456789abcdef0123\"";
    let with_token = Config::from_toml(&text("0.0.0.0:5090", token), &no_env);
    assert!(with_token.is_ok(), "{with_token:?}");
    assert!(Config::from_toml(&text("127.0.0.1:5090", ""), &no_env).is_ok());
    assert!(Config::from_toml(&text("[::1]:5090", ""), &no_env).is_ok());
}

#[test]
fn credentials_in_upstream_urls_are_refused_without_echoing_them() {
    let text = r#"
        builtin_upstreams = false
        [[upstreams]]
        name = "a.io"
        url = "https://user:s3cret@a.io"
        mirrors = ["https://b.io", "https://token:s3cret@c.io"]
    "#;
    let err = Config::from_toml(text, &no_env).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["upstreams[0].url", "upstreams[0].mirrors[1]"],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("username") && text.contains("password_file"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    let user_only =
        "builtin_upstreams = false\n[[upstreams]]\nname = \"a.io\"\nurl = \"https://user@a.io\"\n";
    assert_eq!(
        Config::from_toml(user_only, &no_env).unwrap_err().0[0].key,
        "upstreams[0].url"
    );
}

#[test]
fn realm_hosts_take_an_optional_port() {
    let entry = |hosts: &str| {
        let text = format!(
            "builtin_upstreams = false\n[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\nrealm_hosts = {hosts}\n"
        );
        Config::from_toml(&text, &no_env)
    };
    let c = entry(r#"["auth.a.io", "auth.a.io:8443"]"#).unwrap();
    assert_eq!(
        c.upstream("a.io").unwrap().realm_hosts,
        ["auth.a.io", "auth.a.io:8443"]
    );
    for bad in [
        r#"["auth.a.io:"]"#,
        r#"["auth.a.io:x"]"#,
        r#"["a:1:2"]"#,
        r#"[":443"]"#,
        r#"["h:0"]"#,
    ] {
        let err = entry(bad).unwrap_err();
        assert_eq!(err.0[0].key, "upstreams[0].realm_hosts", "{bad}: {err}");
    }
}

#[test]
fn manifest_timeout_defaults_and_refuses_zero() {
    let base =
        "builtin_upstreams = false\n[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\n";
    let c = Config::from_toml(base, &no_env).unwrap();
    assert_eq!(
        c.upstream("a.io").unwrap().resilience.manifest_timeout,
        Duration::from_secs(30)
    );
    let c = Config::from_toml(&format!("{base}manifest_timeout = \"5s\"\n"), &no_env).unwrap();
    assert_eq!(
        c.upstream("a.io").unwrap().resilience.manifest_timeout,
        Duration::from_secs(5)
    );
    let err =
        Config::from_toml(&format!("{base}manifest_timeout = \"0s\"\n"), &no_env).unwrap_err();
    assert_eq!(err.0[0].key, "upstreams[0].manifest_timeout", "{err}");
}

#[test]
fn request_deadline_defaults_and_refuses_zero() {
    let base =
        "builtin_upstreams = false\n[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\n";
    let deadline = |extra: &str| {
        Config::from_toml(&format!("{base}{extra}"), &no_env)
            .map(|c| c.upstream("a.io").unwrap().resilience.request_deadline)
    };
    assert_eq!(deadline(""), Ok(Duration::from_secs(20)));
    assert_eq!(
        deadline("request_deadline = \"3s\"\n"),
        Ok(Duration::from_secs(3))
    );
    let err = deadline("request_deadline = \"0s\"\n").unwrap_err();
    assert_eq!(err.0[0].key, "upstreams[0].request_deadline", "{err}");
}

#[test]
fn admin_is_off_by_default_and_checks_its_listener_and_token() {
    let base = "listen = \"127.0.0.1:5000\"\nbuiltin_upstreams = false\n[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\n";
    let admin = |extra: &str, env: &dyn Fn(&str) -> Option<String>| {
        Config::from_toml(&format!("{base}[admin]\n{extra}"), env).map(|c| c.admin)
    };
    let off = Config::from_toml(base, &no_env).unwrap().admin;
    assert!(!off.endpoints_on());
    let on = admin(
        "listen = \"127.0.0.1:5090\"\ntoken = \"0123456789abcdef\"\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(on.listen, Some("127.0.0.1:5090".parse().unwrap()));
    assert_eq!(on.token.unwrap().expose(), "0123456789abcdef");
    let env = |k: &str| (k == "BERTH_ADMIN_TOKEN").then(|| "from-the-environment".to_owned());
    let from_env = admin("", &env).unwrap();
    assert!(from_env.endpoints_on() && from_env.listen.is_none());
    let err = admin(
        "listen = \"127.0.0.1:5000\"\ntoken = \"short\"\ntoken_file = \"/x\"\n",
        &no_env,
    )
    .unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["admin.listen", "admin.token_file"], "{err}");
    let err = admin("token = \"short\"\n", &no_env).unwrap_err();
    assert_eq!(err.0[0].key, "admin.token", "{err}");
    assert!(err.0[0].reason.contains("at least 16"), "{err}");
}

#[test]
fn tls_takes_files_or_acme_and_names_each_problem() {
    let base = "listen = \"127.0.0.1:5443\"\nbuiltin_upstreams = false\n[[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\n";
    let tls = |extra: &str| Config::from_toml(&format!("{base}{extra}"), &no_env).map(|c| c.tls);
    assert_eq!(tls("").unwrap(), None);
    let files = tls("[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nredirect_listen = \"127.0.0.1:8080\"\n[[tls.certs]]\ncert_file = \"o.pem\"\nkey_file = \"ok.pem\"\nnames = [\"Other.Example\", \"*.other.example\"]\n")
        .unwrap()
        .unwrap();
    assert_eq!(files.certs.len(), 2);
    assert_eq!(files.certs[1].names, ["other.example", "*.other.example"]);
    assert_eq!(
        files.redirect_listen,
        Some("127.0.0.1:8080".parse().unwrap())
    );
    let acme = tls("[tls]\nredirect_listen = \"127.0.0.1:8080\"\n[tls.acme]\ndomains = [\"m.example\"]\ncontact = \"mailto:ops@example.com\"\nchallenge = \"http-01\"\n")
        .unwrap()
        .unwrap()
        .acme
        .unwrap();
    assert_eq!(acme.directory_url.as_str(), LETS_ENCRYPT);
    assert_eq!(acme.challenge, Challenge::Http01);
    assert_eq!(acme.contact, ["mailto:ops@example.com"]);

    let err = tls("[tls]\ncert_file = \"c.pem\"\n[[tls.certs]]\ncert_file = \"o.pem\"\nkey_file = \"k\"\nnames = [\"bad name\"]\n[tls.acme]\ndomains = [\"*.m.example\"]\nchallenge = \"http-01\"\n").unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "tls.key_file",
            "tls.certs[0].names[0]",
            "tls.acme",
            "tls.acme.domains[0]",
            "tls.acme.challenge",
        ],
        "{err}"
    );
    assert!(err.to_string().contains("DNS-01"), "{err}");
    let err = tls("[tls]\n").unwrap_err();
    assert_eq!(err.0[0].key, "tls", "{err}");
}

/// Every key of the file format (a field of a `Raw*` struct in `file.rs`)
/// is documented in docs/config.md.
#[test]
fn every_key_is_documented() {
    let source = include_str!("file.rs");
    let docs = include_str!("../../../docs/config.md");
    let mut in_raw_struct = false;
    let mut missing = Vec::new();
    let mut keys = 0;
    for line in source.lines() {
        let line = line.trim();
        if line.starts_with("pub(super) struct Raw") {
            in_raw_struct = true;
            continue;
        }
        if line == "}" {
            in_raw_struct = false;
        }
        if !in_raw_struct {
            continue;
        }
        let Some(field) = line
            .strip_prefix("pub(super) ")
            .and_then(|f| f.split_once(':'))
            .map(|(name, _)| name)
        else {
            continue;
        };
        keys += 1;
        // A key (`tag_ttl`, `action = "deny"`) or a table (`[server]`,
        // `[[upstreams]]`, `[tls.acme]`).
        let documented = [
            format!("`{field}`"),
            format!("`{field} ="),
            format!("[{field}]"),
            format!(".{field}]"),
        ]
        .iter()
        .any(|form| docs.contains(form.as_str()));
        if !documented {
            missing.push(field);
        }
    }
    assert!(keys > 60, "found only {keys} keys: the parser above is off");
    assert!(missing.is_empty(), "not in docs/config.md: {missing:?}");
}

/// Every unknown key and every wrong value, each once, in file order; an
/// unknown key hides nothing.
#[test]
fn all_problems_are_listed_once_in_file_order() {
    let text = r#"
zebra = 1
listen = 5000
[server]
max_connections = "many"
[cache]
colour = "blue"
max_size = "huge"
[[upstreams]]
name = "a.io"
url = "https://a.io"
password = "p"
password_file = "/nope"
username = "u"
aardvark = true
[[upstreams]]
name = "b.io"
url = "gopher://b"
retries = "x"
"#;
    let err = Config::from_toml(text, &no_env).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "zebra",
            "listen",
            "server.max_connections",
            "cache.colour",
            "cache.max_size",
            "upstreams[0].password_file",
            "upstreams[0].aardvark",
            "upstreams[1].url",
            "upstreams[1].retries",
        ],
        "{err}"
    );
    assert!(
        !err.to_string().contains("no password"),
        "a second message for the same fault: {err}"
    );
}

#[test]
fn a_wrong_type_hides_nothing_else_of_its_table() {
    let text = "[server]\nmax_connections = \"many\"\nidle_timeout = \"soon\"\ncolour = 1\n\
                [[upstreams]]\nname = \"a.io\"\nurl = \"https://a.io\"\nretries = \"x\"\ntag_ttl = \"often\"\n";
    let err = Config::from_toml(text, &no_env).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "server.max_connections",
            "server.idle_timeout",
            "server.colour",
            "upstreams[0].retries",
            "upstreams[0].tag_ttl"
        ],
        "{err}"
    );
    // Each problem is one line: the message names no key of its own.
    let printed = err.to_string();
    assert!(
        printed.lines().all(|l| !l.trim_start().starts_with("in `")),
        "{printed}"
    );
}
