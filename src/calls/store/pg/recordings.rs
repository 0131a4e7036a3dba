//! Call recordings on PostgreSQL: what reading a call asks of its recordings. The `record` flag itself is a column
//! of `calls` (written with the call). Until the `recordings` table exists on PostgreSQL a call there has no
//! recordings, and the recording methods report [`StoreError::Unsupported`].

use postgres::GenericClient;

use crate::calls::recording::Recording;
use crate::calls::store::StoreError;

/// The call's recordings in the order Twilio reported them. None yet.
pub(in crate::calls::store) fn read_recordings(
    _c: &mut impl GenericClient,
    _id: &str,
) -> Result<Vec<Recording>, StoreError> {
    Ok(Vec::new())
}
