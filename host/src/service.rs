//! The service layer of a node, assembled: governance, authentication and clean rooms over one
//! [`Core`] (runtime, ledger, reconciler).

use std::sync::Arc;

use crate::auth::Auth;
use crate::cleanroom::Cleanroom;
use crate::gov::{GovConfig, Governance};
use crate::ledger::Ledger;
use crate::reconcile::Reconciler;
use crate::runtime::Runtime;
use crate::txn::Core;

/// Governance, authentication and clean rooms of one node.
pub struct Services {
    /// What they run on.
    pub core: Arc<Core>,
    /// Callers and their credentials.
    pub auth: Arc<Auth>,
    /// Clean-room sessions, secrets, ID tokens.
    pub cleanroom: Arc<Cleanroom>,
    /// Proposals, ballots, members, the constitution.
    pub gov: Arc<Governance>,
}

impl Services {
    /// The services over `runtime`, `ledger` and `reconciler`; service tokens are signed with the
    /// key in `token_key_path` (created if missing).
    pub fn new(
        runtime: Arc<Runtime>,
        ledger: Arc<Ledger>,
        reconciler: Arc<Reconciler>,
        token_key_path: &std::path::Path,
        config: GovConfig,
    ) -> std::io::Result<Self> {
        let core = Arc::new(Core { runtime, ledger, reconciler });
        let auth = Arc::new(Auth::new(core.clone(), token_key_path, &config)?);
        let cleanroom = Arc::new(Cleanroom::new(core.clone(), auth.clone(), &config));
        let gov = Arc::new(Governance::new(core.clone(), auth.clone(), config));
        Ok(Self { core, auth, cleanroom, gov })
    }
}
