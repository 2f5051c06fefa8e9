//! The one connection a transport shares among its calls: opened by the first call that needs it
//! (a burst of first calls opens one), forgotten when it can no longer serve, closed for good.

use std::future::Future;
use std::sync::Mutex;

use crate::error::LockError;

enum State<C> {
    Idle,
    /// The connection, and which one it is: forgetting it must not drop a newer one.
    Connected(C, u64),
    Closed,
}

pub struct Slot<C> {
    /// The state, and how many connections were opened so far (the last one's number).
    state: Mutex<(State<C>, u64)>,
    /// Serializes opening so a burst of first calls opens one connection.
    opening: tokio::sync::Mutex<()>,
}

impl<C> Default for Slot<C> {
    fn default() -> Self {
        Self {
            state: Mutex::new((State::Idle, 0)),
            opening: tokio::sync::Mutex::new(()),
        }
    }
}

impl<C: Clone> Slot<C> {
    /// The connection and its number, opened with `open` first if there is none. Fails with
    /// [`LockError::Closed`] (about the lock `key`) once closed, even if it closed meanwhile.
    pub async fn get_or_open<F, O>(&self, key: &str, open: F) -> Result<(C, u64), LockError>
    where
        F: FnOnce() -> O,
        O: Future<Output = Result<C, LockError>>,
    {
        if let Some(current) = self.current(key)? {
            return Ok(current);
        }
        let _opening = self.opening.lock().await;
        if let Some(current) = self.current(key)? {
            return Ok(current);
        }
        let opened = open().await?;
        let (state, count) = &mut *self.state.lock().expect("connection state");
        match state {
            State::Closed => Err(LockError::Closed {
                key: key.to_owned(),
            }),
            _ => {
                *count += 1;
                *state = State::Connected(opened.clone(), *count);
                Ok((opened, *count))
            }
        }
    }

    /// Drops connection `number` if it is still the current one: the next call opens another.
    pub fn forget(&self, number: u64) {
        let (state, _) = &mut *self.state.lock().expect("connection state");
        if matches!(state, State::Connected(_, current) if *current == number) {
            *state = State::Idle;
        }
    }

    /// Drops the current connection, whichever it is.
    pub fn forget_current(&self) {
        let (state, _) = &mut *self.state.lock().expect("connection state");
        if matches!(state, State::Connected(..)) {
            *state = State::Idle;
        }
    }

    /// Later calls fail with [`LockError::Closed`]; the connection ends with its last user.
    pub fn close(&self) {
        self.state.lock().expect("connection state").0 = State::Closed;
    }

    fn current(&self, key: &str) -> Result<Option<(C, u64)>, LockError> {
        match &self.state.lock().expect("connection state").0 {
            State::Idle => Ok(None),
            State::Connected(connection, number) => Ok(Some((connection.clone(), *number))),
            State::Closed => Err(LockError::Closed {
                key: key.to_owned(),
            }),
        }
    }
}
