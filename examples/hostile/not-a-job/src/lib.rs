//! Hostile component: a component, but not a job (it exports only `hello`).
//! The engine must refuse it and name what is missing.

wit_bindgen::generate!({
    inline: "
        package test:not-a-job;
        world almost {
            export hello: func() -> string;
        }
    ",
});

struct Almost;

impl Guest for Almost {
    fn hello() -> String {
        "hello".into()
    }
}

export!(Almost);
