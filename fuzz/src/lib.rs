//! What every fuzz target shares: a source context with one envelope loaded, so that the
//! mappers get past the agent lookup and into the parameter code.

use firebreak_containment::envelope::Envelope;
use firebreak_containment::EnvelopeStore;

pub const CLUSTER: &str = "default";

pub fn envelopes() -> EnvelopeStore {
    let yaml = "apiVersion: firebreak.dev/v1alpha1\nkind: Envelope\nmetadata: {name: fuzz}\nspec:\n  agent: {cluster: default, namespace: default, workload: Pod/alpine, serviceAccount: default}\n  version: 1\n  status: converged\n";
    let mut store = EnvelopeStore::default();
    if let Ok(envelope) = Envelope::from_yaml(yaml) {
        let _ = store.insert(envelope, "fuzz.yaml".into());
    }
    store
}
