//! The benchmark's webhook body, shared by loadbench and `benches/hot_paths.rs` (which
//! includes this file by path): the ~550-byte body of bench/ingest.lua with one id filled in.

pub fn bench_body(id: &str) -> String {
    format!(
        concat!(
            r#"{{"id":"{id}","type":"order.created","api_version":"2024-06-01","created":1718000000,"#,
            r#""livemode":false,"data":{{"order":{{"number":"SO-000123","currency":"EUR","total":12999,"#,
            r#""customer":{{"email":"jane.doe@example.com","name":"Jane Doe","locale":"de-DE"}},"#,
            r#""lines":[{{"sku":"WIDGET-RED-42","qty":2,"unit_price":4999}},"#,
            r#"{{"sku":"GADGET-BLUE-7","qty":1,"unit_price":3001}}],"#,
            r#""shipping":{{"method":"standard","address":{{"line1":"Musterstrasse 1","city":"Berlin","#,
            r#""postal_code":"10115","country":"DE"}}}}}}}},"note":"benchmark payload padding ........"}}"#
        ),
        id = id
    )
}
