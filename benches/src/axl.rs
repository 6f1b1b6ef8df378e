//! Discovery's paging through the fake AXL service, timed: what the connector's start costs
//! the IM&P side per connector node.

use connector::core::directory as d;
use fakes::imp::axl::{AxlAccount, AxlNode, AxlRequest, AxlService};
use fakes::imp::{Directory, UserRecord};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A directory of `users` users, all homed on `imp-a-1`.
pub fn directory(users: usize) -> Rc<Directory> {
    Rc::new(Directory::new((0..users).map(|i| UserRecord {
        userid: format!("user{i:06}"),
        jid: format!("user{i:06}@example.com"),
        email: Some(format!("user{i:06}@example.com")),
        password: "pw".into(),
        home: "imp-a-1".into(),
    })))
}

/// The AXL service of node `imp-a-1` serving `dir` (cheap: the directory is shared).
pub fn service(dir: &Rc<Directory>) -> AxlService {
    let account = AxlAccount {
        username: "axl".into(),
        password: "secret".into(),
        axl_role: true,
    };
    let node = AxlNode {
        name: "imp-a-1".into(),
        description: String::new(),
        version: "14.0".into(),
        prg_peer: None,
        prg_high_availability: false,
    };
    AxlService::new(vec![account], vec![node], dir.clone(), Vec::new())
}

/// Wall time to answer every page of discovery's user query (what one connector node asks at
/// its start), and the rows read. `fresh_per_page` answers each page from a new service, so
/// each builds its table again: the cost of building the whole result for every page.
pub fn page_through(users: usize, fresh_per_page: bool) -> (Duration, usize) {
    let headers = vec![("Authorization".to_string(), d::basic_auth("axl", "secret"))];
    let dir = directory(users);
    let mut svc = service(&dir);
    let start = Instant::now();
    let (mut rows, mut page) = (0, 0);
    loop {
        if fresh_per_page {
            svc = service(&dir);
        }
        let body = d::users_page_request(page);
        let req = AxlRequest {
            method: "POST",
            path: "/axl/",
            headers: &headers,
            body: body.as_bytes(),
        };
        let resp = svc.handle(req);
        let n = d::parse_users(resp.body.as_bytes()).expect("a page").len();
        rows += n;
        if !d::more_pages(n, page) {
            return (start.elapsed(), rows);
        }
        page += 1;
    }
}
