//! A node far behind is caught up.

use std::collections::BTreeMap;

use anyhow::Result;
use credex_cli::city::capitals;
use credex_cli::generator::Generator;

use crate::sandbox::{Sandbox, start_date};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_100k_entries_behind_is_caught_up() -> Result<()> {
    const ENTRIES: u64 = 100_000;
    let cities = capitals()[..2].to_vec();
    let mut sandbox = Sandbox::builder()
        .cities(cities.clone())
        .stopped("wuhan")
        .start()
        .await?;
    let mut generator = Generator::new(&cities[0], 1, start_date());
    let mut published = 0;
    while published < ENTRIES {
        let records: Vec<_> = (0..5_000).map(|_| generator.record()).collect();
        published = sandbox.publish("changsha", records).await?.tree_size;
    }
    assert_eq!(published, ENTRIES);
    sandbox.start_node("wuhan").await?;
    sandbox
        .wait_converged(&BTreeMap::from([("changsha".to_owned(), ENTRIES)]))
        .await?;
    let status = sandbox.status("wuhan").await?;
    let changsha = status
        .origins
        .iter()
        .find(|o| o.origin == "changsha")
        .expect("origin listed");
    assert_eq!(
        (changsha.local_size, changsha.lag, changsha.forked),
        (ENTRIES, 0, false)
    );
    sandbox.shutdown().await
}
