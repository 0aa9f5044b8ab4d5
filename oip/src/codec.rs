//! The codec of every generated service and client: prost's, with two changes to decoding.
//!
//! * A request that names a model ([`Placed::NAMES_MODEL`]) must carry its name and version
//!   (fields 1 and 2) only at the start of the message, once each, in that order: where the
//!   proxy reads them. Protobuf lets a field repeat anywhere, the last value winning, so
//!   without this a second `model_name` behind the tensors would reach another model than
//!   the one the proxy's policy placed the call with.
//! * A message that does not parse is the client's mistake: INVALID_ARGUMENT, not prost's
//!   INTERNAL, so it is not counted against the server's availability.

use std::marker::PhantomData;

use bytes::Buf;
use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Whether a message is a request whose fields 1–2 name a model and version.
pub trait Placed {
    const NAMES_MODEL: bool = false;
}

pub struct StrictCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        StrictCodec(PhantomData)
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Placed + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> ProstEncoder<T> {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> StrictDecoder<U> {
        StrictDecoder(ProstCodec::<T, U>::raw_decoder(BufferSettings::default()))
    }
}

pub struct StrictDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default + Placed> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let malformed = |e: prost::DecodeError| Status::invalid_argument(format!("malformed message: {e}"));
        if !U::NAMES_MODEL {
            return U::decode(buf).map(Some).map_err(malformed);
        }
        // The message is one contiguous buffer; a split one is gathered to be checked whole.
        if buf.chunk().len() == buf.remaining() {
            check_placement(buf.chunk()).map_err(Status::invalid_argument)?;
            return U::decode(buf).map(Some).map_err(malformed);
        }
        let whole = buf.copy_to_bytes(buf.remaining());
        check_placement(&whole).map_err(Status::invalid_argument)?;
        U::decode(whole).map(Some).map_err(malformed)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// Walks the message's top-level fields: fields 1 and 2 may only open it, 1 before 2, once
/// each. Malformed framing is left to prost, which reports it.
pub fn check_placement(mut msg: &[u8]) -> Result<(), &'static str> {
    // `named`: whether the first field was field 1.
    let (mut index, mut named) = (0usize, 0usize);
    while !msg.is_empty() {
        let Ok(tag) = prost::encoding::decode_varint(&mut msg) else { return Ok(()) };
        let (field, wire) = (tag >> 3, tag & 7);
        match field {
            1 if index != 0 => return Err("model_name (field 1) must be the message's first field, given once"),
            1 => named = 1,
            2 if index != named => return Err("model_version (field 2) must come right after model_name, given once"),
            _ => {}
        }
        let skip = match wire {
            0 => match prost::encoding::decode_varint(&mut msg) {
                Ok(_) => 0,
                Err(_) => return Ok(()),
            },
            1 => 8,
            2 => match prost::encoding::decode_varint(&mut msg).ok().and_then(|n| usize::try_from(n).ok()) {
                Some(n) => n,
                None => return Ok(()),
            },
            5 => 4,
            _ => return Ok(()),
        };
        if skip > msg.len() {
            return Ok(());
        }
        msg.advance(skip);
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u8, v: &[u8]) -> Vec<u8> {
        [vec![n << 3 | 2, v.len() as u8], v.to_vec()].concat()
    }

    #[test]
    fn names_only_where_the_proxy_reads_them() {
        let (m, v, inputs) = (field(1, b"mlp"), field(2, b"v1"), field(5, &[1, 2, 3]));
        let (late_name, late_version, varint) = (field(1, b"secret"), field(2, b"v9"), vec![3 << 3, 7]);
        let ok: [&[&[u8]]; 5] = [&[&m, &v, &inputs], &[&m, &inputs], &[&inputs], &[&v, &inputs], &[]];
        for parts in ok {
            let msg = parts.concat();
            assert_eq!(check_placement(&msg), Ok(()), "{msg:?}");
        }
        let bad: [&[&[u8]]; 6] = [
            &[&m, &inputs, &late_name],
            &[&m, &v, &inputs, &late_version],
            &[&m, &m],
            &[&m, &v, &v],
            &[&v, &m],
            // A varint field before the name.
            &[&varint, &m],
        ];
        for parts in bad {
            let msg = parts.concat();
            assert!(check_placement(&msg).is_err(), "{msg:?}");
        }
    }

    #[test]
    fn unparseable_framing_is_left_to_prost() {
        for msg in [vec![0x0a, 0xff], vec![0x0a], vec![0x0b, 1], vec![0xff; 12]] {
            assert_eq!(check_placement(&msg), Ok(()));
        }
    }
}
