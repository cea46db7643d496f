//! [`Collective`] over MPI (the `mpi` crate on the system's OpenMPI): `mpirun -np N se train
//! --distributed mpi ...` starts N ranks, on one machine or on several (`--host a,b` or a
//! hostfile).

use std::sync::Mutex;

use mpi::Threading;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};

use super::Collective;

/// MPI's world communicator. Calls are serialised by a mutex, so MPI needs only
/// `MPI_THREAD_SERIALIZED` (the Learner may call from another thread than the one that
/// initialised MPI).
pub struct MpiCollective {
    world: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
}

// SAFETY: the communicator is a handle into the MPI library, used under the mutex only, and MPI
// was initialised with at least `MPI_THREAD_SERIALIZED` (checked in `init`).
unsafe impl Send for MpiCollective {}
unsafe impl Sync for MpiCollective {}

impl std::fmt::Debug for MpiCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiCollective(rank {} of {})", self.rank, self.size)
    }
}

/// Why MPI could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpiInitError {
    /// `init` was called twice in one process.
    #[error("MPI was already initialised")]
    AlreadyInitialised,
    /// The MPI library cannot be called from the Learner's threads.
    #[error("this MPI library offers thread level {0}; training needs Serialized")]
    ThreadLevel(String),
}

/// Starts MPI. Keep the [`Universe`] alive until the end: dropping it finalises MPI.
pub fn init() -> Result<(Universe, MpiCollective), MpiInitError> {
    let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
        .ok_or(MpiInitError::AlreadyInitialised)?;
    if threading < Threading::Serialized {
        return Err(MpiInitError::ThreadLevel(format!("{threading:?}")));
    }
    let world = universe.world();
    let collective = MpiCollective {
        rank: world.rank() as usize,
        size: world.size() as usize,
        world: Mutex::new(world),
    };
    Ok((universe, collective))
}

impl MpiCollective {
    /// Makes a panic on this rank end the whole job (after the usual panic message): the other
    /// ranks would otherwise wait forever in their next all-reduce.
    pub fn abort_on_panic(self: &std::sync::Arc<Self>) {
        let collective = self.clone();
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            eprintln!(
                "rank {} of {} panicked: aborting the MPI job",
                collective.rank, collective.size
            );
            match collective.world.try_lock() {
                Ok(world) => world.abort(70),
                // The panic came from inside a collective call: leave without MPI.
                Err(_) => std::process::exit(70),
            }
        }));
    }

    /// Ends the whole job (every rank) with `code`: a rank that fails alone would leave the
    /// others waiting in their next all-reduce.
    pub fn abort(&self, code: i32) -> ! {
        self.world.lock().unwrap().abort(code)
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, buffer: &mut [f32]) {
        let input = buffer.to_vec();
        self.world
            .lock()
            .unwrap()
            .all_reduce_into(&input[..], buffer, SystemOperation::sum());
    }

    fn broadcast_from_root(&self, buffer: &mut [f32]) {
        self.world
            .lock()
            .unwrap()
            .process_at_rank(0)
            .broadcast_into(buffer);
    }
}
