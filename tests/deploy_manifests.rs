//! The Kubernetes manifests in `deploy/kubernetes/` hold together: every
//! document parses and names its kind; the berth.toml of the ConfigMap
//! passes `berth check-config` with the node URL a pod gets; and the
//! StatefulSet and the DaemonSet mount the config, the secret and the data
//! where that berth.toml looks, expose its port and probe `/health`.
// Test code reports failure by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every document of every manifest, with the file it came from.
fn documents() -> Vec<(String, Yaml)> {
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        docs.extend(parsed.into_iter().map(|d| (name.clone(), d)));
    }
    docs
}

fn of_kind<'a>(docs: &'a [(String, Yaml)], kind: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(kind))
        .map(|(_, d)| d)
        .collect()
}

fn text(y: &Yaml) -> &str {
    y.as_str().unwrap_or_else(|| panic!("not a string: {y:?}"))
}

/// The value of `key` in `toml`'s `table` (`""`: the top level).
fn toml_value(toml: &str, table: &str, key: &str) -> String {
    let parsed: toml::Table = toml.parse().unwrap();
    let t = if table.is_empty() {
        &parsed
    } else {
        parsed[table].as_table().unwrap()
    };
    t[key].as_str().unwrap().to_owned()
}

#[test]
fn every_document_parses_and_the_kustomization_lists_files_that_exist() {
    let docs = documents();
    assert!(docs.len() >= 9, "{}", docs.len());
    for (file, d) in &docs {
        assert!(d["apiVersion"].as_str().is_some(), "{file}: no apiVersion");
        let kind = d["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        if !matches!(kind, "Kustomization" | "Namespace") {
            assert!(d["metadata"]["name"].as_str().is_some(), "{file}: no name");
            assert_eq!(d["metadata"]["namespace"].as_str(), Some("berth"), "{file}");
        }
    }
    let kustomization = of_kind(&docs, "Kustomization")[0];
    for resource in kustomization["resources"].as_vec().unwrap() {
        assert!(dir().join(text(resource)).is_file(), "{resource:?}");
    }
    // The client Service and the headless one the StatefulSet names.
    let services = of_kind(&docs, "Service");
    let set = of_kind(&docs, "StatefulSet")[0];
    let headless = services
        .iter()
        .find(|s| s["metadata"]["name"] == set["spec"]["serviceName"])
        .expect("the StatefulSet's service");
    assert_eq!(text(&headless["spec"]["clusterIP"]), "None");
}

#[test]
fn the_configmap_config_passes_check_config_and_the_pods_mount_what_it_names() {
    let docs = documents();
    let config_map = of_kind(&docs, "ConfigMap")[0];
    let toml_text = text(&config_map["data"]["berth.toml"]).to_owned();
    let secret = of_kind(&docs, "Secret")[0];
    let secret_name = text(&secret["metadata"]["name"]);
    let secret_file = toml_value(&toml_text, "cluster", "secret_file");
    let data_dir = toml_value(&toml_text, "", "data_dir");
    let listen_port: i64 = toml_value(&toml_text, "", "listen")
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();

    for workload in ["StatefulSet", "DaemonSet"] {
        let w = of_kind(&docs, workload)[0];
        let pod = &w["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        // The config file berth is started with is where the ConfigMap is.
        let args: Vec<&str> = container["args"]
            .as_vec()
            .unwrap()
            .iter()
            .map(text)
            .collect();
        let config_path = Path::new(args[args.iter().position(|a| *a == "--config").unwrap() + 1]);
        let mounts = container["volumeMounts"].as_vec().unwrap();
        let volumes = pod["volumes"].as_vec().unwrap();
        let mount_of = |path: &Path| {
            let m = mounts
                .iter()
                .find(|m| path.starts_with(text(&m["mountPath"])))
                .unwrap_or_else(|| panic!("{workload}: nothing mounted at {}", path.display()));
            text(&m["name"]).to_owned()
        };
        let config_volume = mount_of(config_path);
        assert!(
            volumes.iter().any(|v| text(&v["name"]) == config_volume
                && v["configMap"]["name"] == config_map["metadata"]["name"]),
            "{workload}: the config volume is the ConfigMap"
        );
        assert!(
            config_path.ends_with("berth.toml"),
            "{}",
            config_path.display()
        );
        let secret_volume = mount_of(Path::new(&secret_file));
        assert!(
            volumes.iter().any(|v| text(&v["name"]) == secret_volume
                && v["secret"]["secretName"].as_str() == Some(secret_name)),
            "{workload}: the secret volume is the Secret"
        );
        assert_eq!(
            Path::new(&secret_file)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap(),
            secret["stringData"]
                .as_hash()
                .unwrap()
                .keys()
                .next()
                .map(text)
                .unwrap(),
            "{workload}: the secret's key is the file name"
        );
        mount_of(Path::new(&data_dir));
        let port = &container["ports"][0];
        assert_eq!(port["containerPort"].as_i64(), Some(listen_port));
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(text(&container[probe]["httpGet"]["path"]), "/health");
            assert_eq!(container[probe]["httpGet"]["port"], port["name"]);
        }
    }

    // check-config on that berth.toml, its files where the pods have them,
    // with the node URL a StatefulSet pod gets.
    let root = tempfile::tempdir().unwrap();
    let secret_path = root.path().join("cluster-secret");
    let secret_value = secret["stringData"]
        .as_hash()
        .unwrap()
        .values()
        .next()
        .unwrap();
    std::fs::write(&secret_path, text(secret_value)).unwrap();
    let local = toml_text
        .replace(&secret_file, secret_path.to_str().unwrap())
        .replace(&data_dir, root.path().join("data").to_str().unwrap());
    let config = root.path().join("berth.toml");
    std::fs::write(&config, local).unwrap();
    let set = of_kind(&docs, "StatefulSet")[0];
    let env = set["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_vec()
        .unwrap();
    let node_url = env
        .iter()
        .find(|e| text(&e["name"]) == "BERTH_CLUSTER_NODE_URL")
        .map(|e| text(&e["value"]))
        .unwrap()
        .replace("$(POD_NAME)", "berth-0")
        .replace("$(POD_NAMESPACE)", "berth");
    assert!(
        node_url.contains(text(&set["spec"]["serviceName"])),
        "{node_url}"
    );
    let check = |node_url: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.args(["check-config", "--config"])
            .arg(&config)
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_LISTEN")
            .env_remove("BERTH_DATA_DIR")
            .env_remove("BERTH_CLUSTER_NODE_URL");
        if let Some(url) = node_url {
            c.env("BERTH_CLUSTER_NODE_URL", url);
        }
        c.output().unwrap()
    };
    let out = check(Some(&node_url));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the pod's own URL the file alone cannot say how to reach it.
    let out = check(None);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster.node_url"));
}
