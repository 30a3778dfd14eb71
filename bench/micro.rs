//! Criterion micro-benchmarks of the hot pure functions: parsing names,
//! references and digests from request paths, normalising `Accept`, and
//! hashing blob bytes as they stream in (with both SHA-256 engines in the
//! dependency tree side by side).

use berth_oci::{Digest, DigestVerifier, Reference, RepoName, accept_key};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const DIGEST: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

fn parsers(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.bench_function("digest", |b| b.iter(|| black_box(DIGEST).parse::<Digest>()));
    g.bench_function("reference/tag", |b| {
        b.iter(|| black_box("1.27.3-alpine").parse::<Reference>())
    });
    g.bench_function("reference/digest", |b| {
        b.iter(|| black_box(DIGEST).parse::<Reference>())
    });
    g.bench_function("repo_name", |b| {
        b.iter(|| black_box("ghcr.io/some-org/team/app_server").parse::<RepoName>())
    });
    g.bench_function("accept_key", |b| {
        let lines = [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.index.v1+json, */*",
        ];
        b.iter(|| accept_key(black_box(lines)));
    });
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    for chunk in [64 << 10, 1 << 20] {
        let data = vec![0x5au8; chunk];
        g.throughput(Throughput::Bytes(chunk as u64));
        g.bench_with_input(BenchmarkId::from_parameter(chunk), &data, |b, data| {
            b.iter(|| {
                let mut v = DigestVerifier::new(DIGEST.parse().unwrap_or_else(|_| Digest::of(b"")));
                v.update(black_box(data));
                v.finish()
            });
        });
    }
    g.finish();
}

/// The two SHA-256 implementations in the dependency tree: `sha2` and aws-lc's
/// (what rustls uses, and berth verifies with), on the same
/// chunk sizes a fill hashes.
fn sha256_engines(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha256");
    for chunk in [64 << 10, 1 << 20] {
        let data = vec![0x5au8; chunk];
        g.throughput(Throughput::Bytes(chunk as u64));
        g.bench_with_input(BenchmarkId::new("sha2", chunk), &data, |b, data| {
            b.iter(|| {
                use sha2::Digest as _;
                let mut h = sha2::Sha256::new();
                h.update(black_box(data));
                h.finalize()
            });
        });
        g.bench_with_input(BenchmarkId::new("aws-lc", chunk), &data, |b, data| {
            b.iter(|| {
                let mut h = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
                h.update(black_box(data));
                h.finish()
            });
        });
    }
    g.finish();
}

criterion_group!(benches, parsers, hashing, sha256_engines);
criterion_main!(benches);
