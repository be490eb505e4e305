//! Smoke tests of the harness itself: if these fail, every e2e count is suspect.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_iam::error::ProvideErrorMetadata;
use firebreak_e2e::moto::{self, Moto};
use firebreak_e2e::{decode_policy, seed_role};

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
const INLINE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket/*"}]}"#;
const MANAGED: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ec2:DescribeInstances"],"Resource":"*"}]}"#;

fn actions(requests: &[firebreak_e2e::IamRequest]) -> Vec<&str> {
    requests.iter().map(|r| r.action.as_str()).collect()
}

#[tokio::test]
async fn records_seed_reads_clears_and_resets() -> anyhow::Result<()> {
    let moto = moto::shared();
    let _guard = moto.exclusive().await;
    moto.reset().await?;
    let iam = moto.iam_client().await;

    let arn = seed_role(
        &iam,
        "smoke",
        TRUST,
        &[("inline-s3", INLINE)],
        &[("managed-ec2", MANAGED)],
    )
    .await?;
    assert_eq!(arn, format!("arn:aws:iam::{}:role/smoke", moto::ACCOUNT_ID));

    // Counted at the server, in order, with their parameters.
    let requests = moto.iam_requests().await?;
    assert_eq!(
        actions(&requests),
        [
            "CreateRole",
            "PutRolePolicy",
            "CreatePolicy",
            "AttachRolePolicy"
        ],
        "{requests:#?}"
    );
    assert!(requests.iter().all(|r| r.is_mutating()), "{requests:#?}");
    let put = &requests[1];
    assert_eq!(put.param("RoleName"), Some("smoke"));
    assert_eq!(put.param("PolicyName"), Some("inline-s3"));
    assert_eq!(
        decode_policy(put.param("PolicyDocument").unwrap()),
        decode_policy(INLINE)
    );
    assert_eq!(
        requests[3].param("PolicyArn"),
        Some(format!("arn:aws:iam::{}:policy/managed-ec2", moto::ACCOUNT_ID).as_str())
    );
    assert_eq!(moto.mutating_iam_requests().await?.len(), 4);

    // Reads are recorded too, and are not mutating.
    let role = iam
        .get_role()
        .role_name("smoke")
        .send()
        .await?
        .role
        .unwrap();
    assert_eq!(
        decode_policy(role.assume_role_policy_document().unwrap()),
        decode_policy(TRUST)
    );
    let inline = iam
        .get_role_policy()
        .role_name("smoke")
        .policy_name("inline-s3")
        .send()
        .await?;
    assert_eq!(
        decode_policy(inline.policy_document()),
        decode_policy(INLINE)
    );
    let requests = moto.iam_requests().await?;
    assert_eq!(requests.len(), 6, "{requests:#?}");
    assert_eq!(requests[4].action, "GetRole");
    assert_eq!(requests[4].param("RoleName"), Some("smoke"));
    assert!(!requests[4].is_mutating());
    assert_eq!(requests[5].action, "GetRolePolicy");
    assert_eq!(moto.mutating_iam_requests().await?.len(), 4);

    // Failed calls reach the server and are counted as well.
    let err = iam
        .delete_role()
        .role_name("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NoSuchEntity"));
    let requests = moto.iam_requests().await?;
    assert_eq!(actions(&requests[6..]), ["DeleteRole"]);

    moto.clear_requests().await?;
    assert!(moto.iam_requests().await?.is_empty());
    // Clearing the recording keeps the state.
    iam.get_role().role_name("smoke").send().await?;
    assert_eq!(actions(&moto.iam_requests().await?), ["GetRole"]);

    moto.reset().await?;
    assert!(moto.iam_requests().await?.is_empty());
    let err = iam.get_role().role_name("smoke").send().await.unwrap_err();
    assert_eq!(err.code(), Some("NoSuchEntity"), "{err:?}");
    // Recording goes on after a reset.
    assert_eq!(actions(&moto.iam_requests().await?), ["GetRole"]);
    Ok(())
}

/// The parent-death signal is tied to the forking *thread*: the shared server must survive
/// the test thread that started it.
#[test]
fn shared_server_outlives_the_thread_that_started_it() {
    let pid = std::thread::spawn(|| moto::shared().pid()).join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(pid),
        "moto_server {pid} died with the thread that started it"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let moto = moto::shared();
        assert_eq!(moto.pid(), pid);
        let iam = moto.iam_client().await;
        iam.list_roles()
            .send()
            .await
            .expect("shared moto answers after its first thread ended");
    });
}

#[test]
fn drop_kills_the_server() {
    let moto = Moto::start().unwrap();
    let pid = moto.pid();
    assert!(alive(pid));
    drop(moto);
    assert!(!alive(pid), "moto_server {pid} survived Drop");
}

/// A test process that dies without running destructors (as with a `static` server, a
/// panic=abort or a SIGKILL) takes its server with it.
#[test]
fn server_dies_with_the_test_process() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_exits_without_dropping",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FIREBREAK_HARNESS_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.split("MOTO_PID=").nth(1))
        .unwrap_or_else(|| {
            panic!(
                "child printed no pid: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "moto_server {pid} outlived its test process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Only does something when run by `server_dies_with_the_test_process`.
#[test]
fn child_exits_without_dropping() {
    if std::env::var_os("FIREBREAK_HARNESS_CHILD").is_none() {
        return;
    }
    let moto = Moto::start().unwrap();
    println!("MOTO_PID={}", moto.pid());
    std::process::exit(0);
}

#[test]
fn missing_executable_says_how_to_install() {
    // Only the error path is exercised: `Moto::start` reads the variable once per call.
    let var = moto::MOTO_SERVER_ENV;
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_starts_without_env",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove(var)
        .env("FIREBREAK_HARNESS_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ERR=") && stdout.contains("./scripts/test"),
        "{stdout}"
    );
}

/// Only does something when run by `missing_executable_says_how_to_install`.
#[test]
fn child_starts_without_env() {
    if std::env::var_os("FIREBREAK_HARNESS_CHILD").is_none() {
        return;
    }
    let err = Moto::start().unwrap_err();
    println!("ERR={err:#}");
}

/// True while `pid` runs (a zombie counts as dead: it no longer serves anything).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X") | None)
        }
        Err(_) => false,
    }
}
