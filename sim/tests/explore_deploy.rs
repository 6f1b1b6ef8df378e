//! The deployment files of `hmsim explore` stay usable: the Kubernetes manifest parses and is
//! an Indexed Job running `hmsim explore` with an output volume and the image the Dockerfile
//! builds; the CI example runs a matrix of shards and a merge.

use serde::Deserialize as _;
use std::path::Path;

fn repo(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn documents(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde_yaml::Value::deserialize(d).expect("a YAML document"))
        .collect()
}

#[test]
fn the_manifest_is_an_indexed_job_running_explore_with_an_output_volume() {
    let docs = documents(&repo("deploy/k8s/explore-job.yaml"));
    let job = docs
        .iter()
        .find(|d| d["kind"] == "Job")
        .expect("a Job in the manifest");
    assert_eq!(job["apiVersion"], "batch/v1");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let completions = spec["completions"].as_u64().expect("completions");
    assert!(completions >= 2 && spec["parallelism"].as_u64().is_some());
    let c = &spec["template"]["spec"]["containers"][0];
    assert!(c["image"].as_str().is_some_and(|i| i.starts_with("hmsim")));
    let command = serde_yaml::to_string(&c["args"]).expect("args");
    assert!(command.contains("hmsim explore") && command.contains("JOB_COMPLETION_INDEX"));
    let env = c["env"].as_sequence().expect("env");
    let n = env
        .iter()
        .find(|e| e["name"] == "JOB_COMPLETIONS")
        .expect("JOB_COMPLETIONS set");
    assert_eq!(n["value"].as_str(), Some(completions.to_string().as_str()));
    let claim = &spec["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"];
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "PersistentVolumeClaim" && d["metadata"]["name"] == *claim)
    );
    assert!(c["volumeMounts"][0]["mountPath"].as_str().is_some());
    let dockerfile = repo("Dockerfile");
    assert!(dockerfile.contains("cargo build --release -p sim"));
    assert!(dockerfile.contains("ENTRYPOINT [\"hmsim\"]"));
}

#[test]
fn the_ci_example_runs_a_matrix_of_shards_and_merges_them() {
    let docs = documents(&repo("deploy/ci/explore.yml"));
    let jobs = &docs[0]["jobs"];
    let shards = jobs["shard"]["strategy"]["matrix"]["shard"]
        .as_sequence()
        .expect("a shard matrix");
    assert_eq!(
        jobs["shard"]["env"]["HMSIM_SHARD_COUNT"].as_u64(),
        Some(shards.len() as u64)
    );
    let merge = serde_yaml::to_string(&jobs["merge"]).expect("merge job");
    assert!(merge.contains("hmsim explore merge"));
}
