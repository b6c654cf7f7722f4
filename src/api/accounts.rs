//! The signed clients of one run, by account (issue 12): the run's own
//! credentials, and one client per tccli profile the input names. Each
//! account signs with its own SecretId, so each gets its own limiters: the
//! documented quotas are per credential.

use std::collections::BTreeMap;

use super::Client;

/// Which client works on an instance: its account's, or the run's own.
#[derive(Clone, Default)]
pub struct Clients {
    /// The run's own credentials (`--profile`, the environment, the shared
    /// file); `None` when none were found and every instance names an account.
    own: Option<Client>,
    by_account: BTreeMap<String, Client>,
}

impl Clients {
    pub fn new(own: Option<Client>) -> Clients {
        Clients {
            own,
            by_account: BTreeMap::new(),
        }
    }

    /// `account`'s client (a tccli profile name).
    pub fn add(&mut self, account: &str, client: Client) {
        self.by_account.insert(account.to_string(), client);
    }

    /// The client for an instance of `account` (`None`: the run's own).
    pub fn get(&self, account: Option<&str>) -> Option<&Client> {
        match account {
            Some(name) => self.by_account.get(name),
            None => self.own.as_ref(),
        }
    }

    /// The run's own client, when it has credentials.
    pub fn own(&self) -> Option<&Client> {
        self.own.as_ref()
    }

    /// Every client with its account (`None`: the run's own), own first.
    pub fn all(&self) -> impl Iterator<Item = (Option<&str>, &Client)> {
        self.own
            .iter()
            .map(|c| (None, c))
            .chain(self.by_account.iter().map(|(a, c)| (Some(a.as_str()), c)))
    }
}

impl From<Client> for Clients {
    fn from(client: Client) -> Clients {
        Clients::new(Some(client))
    }
}

impl From<&Client> for Clients {
    fn from(client: &Client) -> Clients {
        Clients::new(Some(client.clone()))
    }
}

impl From<&Clients> for Clients {
    fn from(clients: &Clients) -> Clients {
        clients.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClientOptions, Credentials};

    fn client(id: &str) -> Client {
        Client::new(Credentials::new(id, "key"), &ClientOptions::default()).unwrap()
    }

    #[test]
    fn each_account_gets_its_own_client_and_none_falls_back_to_another() {
        let mut c = Clients::new(Some(client("AKIDown")));
        c.add("prod-a", client("AKIDa"));
        c.add("prod-b", client("AKIDb"));
        assert_eq!(c.get(None).unwrap().secret_id(), "AKIDown");
        assert_eq!(c.get(Some("prod-a")).unwrap().secret_id(), "AKIDa");
        assert_eq!(c.get(Some("prod-b")).unwrap().secret_id(), "AKIDb");
        // An account without credentials is never served another's.
        assert!(c.get(Some("prod-c")).is_none());
        assert!(Clients::new(None).get(None).is_none());
        // Without credentials of its own, a run never lends an account's.
        let mut only = Clients::new(None);
        only.add("prod-a", client("AKIDa"));
        assert!(only.get(None).is_none());
        let all: Vec<_> = c
            .all()
            .map(|(a, c)| (a, c.secret_id().to_string()))
            .collect();
        assert_eq!(
            all,
            vec![
                (None, "AKIDown".into()),
                (Some("prod-a"), "AKIDa".into()),
                (Some("prod-b"), "AKIDb".into())
            ]
        );
    }
}
