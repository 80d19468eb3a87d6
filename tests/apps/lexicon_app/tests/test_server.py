import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import server


class ScoreTest(unittest.TestCase):
    def test_score_adds_word_weights(self) -> None:
        self.assertEqual(server.score({"good": 1.0, "bad": -1.0}, "Good, good and bad!"), 1.0)


if __name__ == "__main__":
    unittest.main()
