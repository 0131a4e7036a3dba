//! The `make-restaurant-reservation` prompt: the user message that asks the agent to book a table by phone with
//! `place_call` (with instructions good enough for the voice model to handle the restaurant alone) and to follow
//! the call with `get_call(wait_s)` until it ends. MCP prompts:
//! <https://modelcontextprotocol.io/specification/2025-11-25/server/prompts>.

use crate::mcp::args::ReservationArgs;

/// The prompt's name.
pub const RESERVATION_PROMPT_NAME: &str = "make-restaurant-reservation";
/// The prompt's description, as listed to the client.
pub const RESERVATION_PROMPT_DESCRIPTION: &str = "Book a restaurant table by phone: place_call with instructions for \
     the voice model (party size, date, time, name, what to do if that time is not available), then follow the call \
     with get_call(wait_s) until it ends and report the outcome.";

/// The user message of the prompt, with every argument trimmed and filled in.
pub fn reservation_message(args: &ReservationArgs) -> String {
    let number = args.restaurant_number.trim();
    let party_size = args.party_size.trim();
    let date = args.date.trim();
    let time = args.time.trim();
    let name = args.name.trim();
    format!(
        "Please book a table at a restaurant for me by phone, using callbridge's place_call tool.\n\
         \n\
         1. Call place_call with to = \"{number}\" (E.164: a plus sign, the country code and the number, digits \
         only, e.g. +14155550100; convert the number to that form first if needed). Keep in mind the call costs \
         money and a real person will answer.\n\
         2. Give it instructions written to the voice model that will speak, along these lines:\n\
         \"You are calling a restaurant on behalf of a customer to book a table for {party_size} people on {date} at \
         {time}, under the name {name}. Be brief, friendly and polite, and speak like a person making a booking. \
         Ask for a table for {party_size} on {date} at {time}. If that time is not available, ask for the closest \
         time within an hour before or after and accept it; if nothing is available that evening, ask what they \
         can offer on {date} and do not book anything else. If they ask for a phone number, an email or a card \
         number, say the customer will provide it when they arrive and do not make one up. Before hanging up, \
         repeat the booking back (day, time, number of people, name) and have them confirm it. Then thank them, \
         say goodbye and end the call with end_call, giving as the outcome exactly what was booked (or why \
         nothing was).\"\n\
         Use a greeting such as \"Hello, I'd like to book a table, please.\" so the model speaks first.\n\
         3. place_call returns the call's id with status queued. Follow the call with get_call(call_id, \
         wait_s=60), again and again, until its status is completed, busy, no-answer, failed or canceled.\n\
         4. Tell me the outcome (what was booked, for when and under which name, or why nothing was) and anything \
         notable the restaurant said, from the transcript."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ReservationArgs {
        ReservationArgs {
            restaurant_number: " +14155550100 ".into(),
            party_size: "4".into(),
            date: "2025-06-14".into(),
            time: "19:30".into(),
            name: "Rivera".into(),
        }
    }

    #[test]
    fn the_message_asks_for_place_call_with_every_booking_detail() {
        let message = reservation_message(&args());

        assert!(message.contains("place_call"), "{message}");
        assert!(message.contains("to = \"+14155550100\""), "{message}");
        assert!(
            message.contains(
                "book a table for 4 people on 2025-06-14 at 19:30, under the name Rivera"
            ),
            "{message}"
        );
    }

    #[test]
    fn the_message_says_what_to_do_when_the_time_is_not_available() {
        let message = reservation_message(&args());

        assert!(
            message.contains("If that time is not available"),
            "{message}"
        );
    }

    #[test]
    fn the_message_asks_to_follow_the_call_with_get_call_and_wait_s() {
        let message = reservation_message(&args());

        assert!(
            message.contains("get_call(call_id, wait_s=60)"),
            "{message}"
        );
        assert!(
            message.contains("completed, busy, no-answer, failed or canceled"),
            "{message}"
        );
    }
}
