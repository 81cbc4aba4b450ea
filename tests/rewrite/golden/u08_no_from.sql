SELECT ml.sentiment('what a great day')
