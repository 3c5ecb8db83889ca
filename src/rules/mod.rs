//! The rules document and the compiled rule table.
//! TO BE WRITTEN (rules helper).
