//! What a verifier expects of evidence beyond its signatures.

use crate::roots::Generation;
use std::collections::BTreeMap;
use std::fmt;

/// An SEV-SNP TCB version, component by component (security patch levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Tcb {
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin and later only).
    pub fmc: Option<u8>,
}

impl Tcb {
    /// Milan/Genoa TCB.
    pub const fn new(bootloader: u8, tee: u8, snp: u8, microcode: u8) -> Self {
        Tcb { bootloader, tee, snp, microcode, fmc: None }
    }

    /// The first component below `min`, as `(name, reported, minimum)`. Components are compared
    /// one by one, never as one integer.
    pub fn first_below(&self, min: &Tcb) -> Option<(&'static str, u8, u8)> {
        let pairs = [
            ("bootloader", self.bootloader, min.bootloader),
            ("tee", self.tee, min.tee),
            ("snp", self.snp, min.snp),
            ("microcode", self.microcode, min.microcode),
            ("fmc", self.fmc.unwrap_or(0), min.fmc.unwrap_or(0)),
        ];
        pairs.into_iter().find(|(_, got, want)| got < want)
    }
}

impl From<sev::firmware::host::TcbVersion> for Tcb {
    fn from(t: sev::firmware::host::TcbVersion) -> Self {
        Tcb { bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode, fmc: t.fmc }
    }
}

impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bl={} tee={} snp={} ucode={}", self.bootloader, self.tee, self.snp, self.microcode)?;
        if let Some(fmc) = self.fmc {
            write!(f, " fmc={fmc}")?;
        }
        Ok(())
    }
}

/// Expected values for verification. `Default` is the strict production baseline: no virtual
/// evidence, no DEBUG, no migration agent, VMPL 0, any measurement/host_data/report_data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Accept `virtual` evidence (insecure; sandbox only).
    pub allow_virtual: bool,
    /// Accept a guest policy with DEBUG set. Never in production.
    pub allow_debug: bool,
    /// Accept a guest policy with MIGRATE_MA set.
    pub allow_migration_agent: bool,
    /// Required VMPL of the report, if any (0 for a guest that requests its own report).
    pub vmpl: Option<u32>,
    /// Minimum guest-policy ABI `(major, minor)`, if any.
    pub min_abi: Option<(u8, u8)>,
    /// Minimum reported TCB per generation (component-wise). A generation without an entry has
    /// no minimum.
    pub min_tcb: BTreeMap<Generation, Tcb>,
    /// Minimum guest SVN, if any.
    pub min_guest_svn: Option<u32>,
    /// Allowed launch measurements; `None` = any.
    pub measurements: Option<Vec<[u8; 48]>>,
    /// Allowed host_data values; `None` = any.
    pub host_data: Option<Vec<[u8; 32]>>,
    /// Allowed report_data values; `None` = any.
    pub report_data: Option<Vec<[u8; 64]>>,
    /// Allowed ID key digests; `None` = any.
    pub id_key_digests: Option<Vec<[u8; 48]>>,
    /// Accept VLEK-signed reports (cloud-provider key).
    pub allow_vlek: bool,
    /// Allowed VLEK `cspID` values (e.g. `CN=cc-us-east-2.amazonaws.com`); `None` = any.
    pub vlek_csp_ids: Option<Vec<String>>,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            allow_virtual: false,
            allow_debug: false,
            allow_migration_agent: false,
            vmpl: Some(0),
            min_abi: None,
            min_tcb: BTreeMap::new(),
            min_guest_svn: None,
            measurements: None,
            host_data: None,
            report_data: None,
            id_key_digests: None,
            allow_vlek: true,
            vlek_csp_ids: None,
        }
    }
}
