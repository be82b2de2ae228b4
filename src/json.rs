//! Reading JSON in one pass without letting one odd value fail everything around it.

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A value read as `T` when it is a JSON object, and told apart (not an error) when it is
/// anything else. serde would read a struct from an array too (by position), and an error
/// inside a list would fail the whole list: this reads a list of entries in one pass and lets
/// the caller skip and report the ones that are not objects.
#[derive(Debug)]
pub enum ObjectOr<T> {
    Object(T),
    /// An array, string, number, boolean or `null`.
    NotAnObject,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectVisitor(std::marker::PhantomData))
    }
}

struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = ObjectOr<T>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ObjectOr<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(ObjectOr::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ObjectOr<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ObjectOr::NotAnObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<ObjectOr<T>, E> {
        Ok(ObjectOr::NotAnObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<ObjectOr<T>, E> {
        Ok(ObjectOr::NotAnObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<ObjectOr<T>, E> {
        Ok(ObjectOr::NotAnObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<ObjectOr<T>, E> {
        Ok(ObjectOr::NotAnObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<ObjectOr<T>, E> {
        Ok(ObjectOr::NotAnObject)
    }

    fn visit_unit<E>(self) -> Result<ObjectOr<T>, E> {
        Ok(ObjectOr::NotAnObject)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn an_object_is_read_and_every_other_json_value_is_told_apart() {
        let read: Vec<ObjectOr<HashMap<String, u8>>> =
            serde_json::from_str(r#"[{"a": 1}, [{"a": 1}], "a", 1, -1, 1.5, true, null]"#).expect("valid JSON");
        assert!(matches!(&read[0], ObjectOr::Object(map) if map["a"] == 1));
        assert_eq!(read.iter().filter(|value| matches!(value, ObjectOr::NotAnObject)).count(), 7);
    }

    #[test]
    fn an_object_of_the_wrong_shape_is_still_an_error() {
        assert!(serde_json::from_str::<ObjectOr<HashMap<String, u8>>>(r#"{"a": "one"}"#).is_err());
    }
}
